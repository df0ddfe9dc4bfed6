"""How many prepare and finish actors a run gets on a cluster, and that small clusters still fit."""

from __future__ import annotations

from support.stages import config

from pipeline.batch.processor import READ_CPUS, StagePlan


def fits(compute, plan, cpus) -> bool:
    held = compute.max_actors * compute.cpus_per_actor + plan.prepare_actors * compute.prepare_cpus
    return held + plan.finish_actors * compute.finish_cpus + READ_CPUS <= cpus + 1e-9


def test_a_two_core_box_gets_two_finish_actors_beside_one_engine():
    c = config(compute={"actors": 1, "cpus_per_actor": 0.5}).compute
    plan = StagePlan.for_cluster(c, {"CPU": 2.0}, window=3)
    assert (plan.window, plan.prepare_actors, plan.finish_actors) == (3, 1, 2) and fits(c, plan, 2.0)


def test_two_one_cpu_nodes_with_half_cpu_engines_still_fit_every_stage():
    c = config(compute={"actors": 2, "cpus_per_actor": 0.5}).compute
    plan = StagePlan.for_cluster(c, {"CPU": 2.0})
    assert plan.prepare_actors == 1 and plan.finish_actors == 1 and fits(c, plan, 2.0)


def test_gpu_nodes_scale_the_cpu_stages_with_the_pool_and_settings_win():
    c = config(compute={"actors": [2, 8], "gpus_per_actor": 1, "cpus_per_actor": 2}).compute
    plan = StagePlan.for_cluster(c, {"CPU": 64.0, "GPU": 8.0})
    assert plan.prepare_actors == 2 and plan.finish_actors == 48 and plan.window == c.window_rows
    fixed = config(compute={"actors": 1, "prepare_concurrency": 3, "finish_concurrency": 5}).compute
    assert StagePlan.for_cluster(fixed, {"CPU": 2.0}) == StagePlan(fixed.window_rows, 3, 5)
    starved = config(compute={"actors": 4, "cpus_per_actor": 1}).compute
    assert StagePlan.for_cluster(starved, {"CPU": 4.0}).finish_actors == 1  # check_resources reports it
