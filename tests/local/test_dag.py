"""`pipelines.local.dag`: what each step waits for, its condition branch, and the definitions refused before a run."""

from __future__ import annotations

import pytest

from pipelines.local.dag import DefinitionError, build_graph

RUNNABLE = ("Processing", "Training")


def step(name: str, kind: str = "Processing", **arguments) -> dict:
    depends_on = arguments.pop("DependsOn", None)
    built = {"Name": name, "Type": kind, "Arguments": arguments}
    return {**built, "DependsOn": depends_on} if depends_on else built


def get(reference: str) -> dict:
    return {"Get": reference}


def test_a_step_waits_for_what_its_arguments_read_and_its_depends_on() -> None:
    graph = build_graph({"Steps": [
        step("Prep"),
        step("Train", "Training", Data=get("Steps.Prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri")),
        step("Eval", Model=get("Steps.Train.ModelArtifacts.S3ModelArtifacts"), DependsOn=["Prep"]),
    ]}, RUNNABLE)
    assert list(graph) == ["Prep", "Train", "Eval"]  # definition order
    assert {name: set(node.depends_on) for name, node in graph.items()} == {
        "Prep": set(), "Train": {"Prep"}, "Eval": {"Train", "Prep"}}
    assert all(node.branch is None for node in graph.values())


def test_branch_steps_wait_for_their_condition_and_know_their_branch() -> None:
    condition = {"Name": "Gate", "Type": "Condition", "Arguments": {
        "Conditions": [{"Type": "GreaterThanOrEqualTo", "LeftValue": get("Steps.Prep.ProcessingJobStatus"),
                        "RightValue": 1}],
        "IfSteps": [step("Deploy")], "ElseSteps": [{"Name": "Stop", "Type": "Fail", "Arguments": {}}]}}
    graph = build_graph({"Steps": [step("Prep"), condition]}, RUNNABLE)
    assert graph["Gate"].depends_on == {"Prep"}  # its conditions read Prep
    assert (graph["Deploy"].branch, graph["Stop"].branch) == (("Gate", True), ("Gate", False))
    assert graph["Deploy"].depends_on == graph["Stop"].depends_on == {"Gate"}


@pytest.mark.parametrize(("steps", "message"), [
    ([step("A"), step("A")], "two steps are named A: step names must be unique"),
    ([{"Type": "Processing", "Arguments": {}}], "a step has no Name"),
    ([step("L", "Lambda")], "step L has type 'Lambda', which the local engine does not run (it runs: Processing, "
                            "Training, Condition, Fail)"),
    ([step("A", X=get("Steps.Nope.Y"))], "step A depends on steps that do not exist: Nope"),
    ([step("A", DependsOn=["B"]), step("B", DependsOn=["A"])], "steps A, B depend on each other (a cycle)"),
])
def test_an_unrunnable_definition_is_refused_naming_the_step(steps: list[dict], message: str) -> None:
    with pytest.raises(DefinitionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_graph({"Steps": steps}, RUNNABLE)
