"""A plain hatchet_sdk workflow (not an Experiment), for the Include() escape hatch."""

from __future__ import annotations

from hatchet_sdk import Context
from pydantic import BaseModel

from scythe_oo.engines.hatchet.client import hatchet_client


class PipelineInput(BaseModel):
    text: str
    times: int = 2


hatchet = hatchet_client()
pipeline = hatchet.workflow(name="test_pipeline", input_validator=PipelineInput)


@pipeline.task()
def shout(input: PipelineInput, ctx: Context) -> dict[str, str]:
    return {"loud": input.text.upper()}


@pipeline.task(parents=[shout])
def repeat(input: PipelineInput, ctx: Context) -> dict[str, str]:
    loud = ctx.task_output(shout)["loud"]
    return {"result": " ".join([loud] * input.times)}


@hatchet.task(name="test_whisper", input_validator=PipelineInput)
def whisper(input: PipelineInput, ctx: Context) -> dict[str, str]:
    """A standalone task, the other shape ``include`` accepts."""
    return {"quiet": input.text.lower()}


if __name__ == "__main__":
    from scythe_oo.engines.hatchet.worker import WorkerConfig

    WorkerConfig(does_leaf=False).start(experiments=[], additional_workflows=[pipeline, whisper])
