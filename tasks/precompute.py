"""Tasks for work that does not depend on the frame chain, run in parallel ahead of it."""

from prefect import get_run_logger, task

from pytti_engine.video_source import precompute_flows
from tasks.records import RunRef
from tasks.resident import flows_dir, job_for


@task(name="source-flows", task_run_name="source-flows-{first}-{last}", persist_result=False, retries=1)
def source_flows_task(run: RunRef, first: int, last: int) -> int:
    """Optical flow of the source video into output frames ``first..last`` (video animation mode)."""
    job = job_for(run)
    written = precompute_flows(job.scene, flows_dir(job.paths), range(first, last + 1))
    get_run_logger().info("source flows for frames %d-%d: %d files", first, last, len(written))
    return len(written)


def flow_chunks(frame_count: int, parts: int) -> list[tuple[int, int]]:
    """Split frames 2..N (frame 1 has no flow) into ``parts`` contiguous ranges."""
    frames = list(range(2, frame_count + 1))
    if not frames:
        return []
    size = -(-len(frames) // parts)
    return [(chunk[0], chunk[-1]) for chunk in (frames[i : i + size] for i in range(0, len(frames), size))]
