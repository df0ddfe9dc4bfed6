"""Write failures fixed on the storage side (full, quota, read-only, denied), as one line naming the fix."""

from __future__ import annotations

import errno
import re

# Write failures the user fixes on the storage side (space, quota, mount, rights): (what, fix).
_FAULTS = {
    errno.ENOSPC: ("no space left on device", "free space or choose another {key}"),
    errno.EDQUOT: ("disk quota exceeded", "free space within the quota (or have it raised) or choose another {key}"),
    errno.EROFS: ("read-only file system", "remount it read-write or choose another {key}"),
    errno.EACCES: ("permission denied", "let this user write there or choose another {key}"),
    errno.EPERM: ("operation not permitted", "let this user write there or choose another {key}"),
}
# S3 error codes of the same meaning (s3fs keeps botocore's error as the cause): code -> errno.
_S3_FAULTS = {"AccessDenied": errno.EACCES, "AllAccessDisabled": errno.EACCES, "QuotaExceeded": errno.EDQUOT,
              "XMinioStorageFull": errno.ENOSPC, "InsufficientStorage": errno.ENOSPC}  # fmt: skip
_S3_FIX = "give these credentials write access to it or choose another {key}"
# How an OutputFault raised in a Ray worker reads in the traceback text Ray hands the driver.
_FAULT_LINE = re.compile(r"^(?:[\w.]+\.)?OutputFault: (.+)$", re.MULTILINE)


class OutputFault(OSError):
    """Writing the output failed for a reason fixed on the storage side (full, quota, read-only,
    denied); str() is one line naming the location, what was written and the fix."""

    def __init__(self, code: int | None, message: str):
        super().__init__(code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def fault_errno(exc: BaseException) -> int | None:
    """The errno of a write failure the user must fix on the storage side (see _FAULTS), else None."""
    if isinstance(exc, OSError) and exc.errno in _FAULTS:
        return exc.errno
    code = _s3_code(exc)
    if code in _S3_FAULTS:
        return _S3_FAULTS[code]
    return errno.EACCES if isinstance(exc, PermissionError) else None


def _s3_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None) or getattr(exc.__cause__, "response", None) or {}
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def find_output_fault(exc: BaseException) -> OutputFault | None:
    """The OutputFault behind exc: itself, in its chain, or (raised in a Ray worker, whose error
    reaches the driver as text only) read back from the traceback text Ray wrapped it in."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OutputFault):
            return err
        lines = _FAULT_LINE.findall(str(err))
        if lines:
            message = lines[-1].strip()
            name = re.search(r"\((E[A-Z]+)\)", message)
            return OutputFault(getattr(errno, name.group(1), None) if name else None, message)
        todo += [err.__cause__, err.__context__, getattr(err, "cause", None)]
    return None


def fault_line(key: str, where: str, code: int, exc: OSError, what: str, local: bool) -> str:
    """`KEY WHERE: what happened (ERRNO or S3 code) while WHAT; the fix, then run again to resume`."""
    s3 = _s3_code(exc) or ("AccessDenied" if not local and code == errno.EACCES else None)
    text, fix = _FAULTS[code]
    if s3 is not None and code == errno.EACCES:
        text, fix = "access denied", _S3_FIX
    return (f"{key} {where}: {text} ({s3 or errno.errorcode[code]}) while {what}; "
            f"{fix.format(key=key)}, then run again to resume").replace("\n", " ")  # fmt: skip
