"""Tool-calling chat records in the OpenAI chat fine-tuning format, built from a trajectory's
steps, and their strict check.

A record is one JSON object a line: `messages` (system, user, assistant with optional
`tool_calls`, tool answering each call by `tool_call_id`), `tools` (OpenAI function tools)
and metadata fields. Steps are, in order: `LMCall` (the messages one LM stage sent and the
answer it got), `Say` (an assistant remark), `ToolCall` (icd_graph.tools: a knowledge-base call
and its result). An LM stage's own system message is merged into its first user turn, so the
record has one system message; its few-shot demo answers are assistant turns with weight 0,
every other assistant turn has weight 1. Every record has the same fields of the same types
(absent values are empty strings, not null), so files of program runs and of gold
trajectories load together with Hugging Face `datasets`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from icd_graph.tools import ToolCall, encode

ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = {"role", "content", "tool_calls", "tool_call_id", "weight"}


@dataclass(frozen=True)
class LMCall:
    """One LM call of a program: the stage, the messages sent and the text answered."""

    stage: str
    messages: tuple[dict[str, Any], ...]
    completion: str


@dataclass(frozen=True)
class Say:
    """What the assistant says before its next tool call (or as a turn of its own)."""

    text: str


def chat_messages(system: str, user: str | None, steps: list, answer: str) -> list[dict[str, Any]]:
    """The messages of a trajectory: `system`, then `user` (when given), then the steps in
    order, then `answer` as the last assistant turn. Tool-call ids are call_1, call_2, ..."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    if user is not None:
        messages.append({"role": "user", "content": user})
    calls = 0
    for step in steps:
        if isinstance(step, LMCall):
            messages.extend(_stage_turns(step))
        elif isinstance(step, Say):
            last = messages[-1]
            if _open(last):
                last["content"] = f"{last['content']}\n{step.text}"
            else:
                messages.append({"role": "assistant", "content": step.text, "weight": 1})
        elif isinstance(step, ToolCall):
            calls += 1
            call = {"id": f"call_{calls}", "type": "function",
                    "function": {"name": step.name, "arguments": json.dumps(step.arguments, ensure_ascii=False)}}
            last = messages[-1]
            if _open(last):
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call], "weight": 1})
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": encode(step.result)})
        else:
            raise TypeError(f"not a trajectory step: {step!r}")
    messages.append({"role": "assistant", "content": answer, "weight": 1})
    return messages


def _open(message: dict[str, Any]) -> bool:
    """An assistant turn of the trajectory (not a demo) that has not called a tool yet."""
    return message["role"] == "assistant" and not message.get("tool_calls") and message.get("weight") == 1


def _stage_turns(call: LMCall) -> list[dict[str, Any]]:
    """An LM call as chat turns: its system text merged into the first user turn, demo answers
    with weight 0, then the answer the LM gave."""
    turns: list[dict[str, Any]] = []
    system = []
    for message in call.messages:
        role, content = message.get("role"), _text(message.get("content"))
        if role == "system":
            system.append(content)
        elif role == "user":
            if system:
                content = "\n\n".join([*system, content])
                system = []
            turns.append({"role": "user", "content": content})
        elif role == "assistant":
            turns.append({"role": "assistant", "content": content, "weight": 0})
    if system:
        turns.append({"role": "user", "content": "\n\n".join(system)})
    turns.append({"role": "assistant", "content": call.completion, "weight": 1})
    return turns


def _text(content: Any) -> str:
    """Message content as text (the text parts of a multi-part content list)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    return "" if content is None else str(content)


def check_record(record: Any) -> list[str]:
    """What makes `record` not a valid tool-calling chat record (empty when nothing): roles,
    content types, one system message first, every tool call's id unique and answered by the
    tool messages that follow it, its name one of `tools` and its arguments a JSON object that
    the tool's parameter schema accepts, and a last assistant turn with text."""
    import jsonschema

    if not isinstance(record, dict):
        return ["record is not a JSON object"]
    messages, tools = record.get("messages"), record.get("tools")
    if not isinstance(messages, list) or not messages:
        return ["messages must be a non-empty list"]
    problems: list[str] = []
    schemas = _tool_schemas(tools, problems)
    ids: set[str] = set()
    pending: list[str] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.append(f"{where}: not an object")
            continue
        role = message.get("role")
        extra = set(message) - MESSAGE_KEYS
        if extra:
            problems.append(f"{where}: unexpected keys {sorted(extra)}")
        if role not in ROLES:
            problems.append(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
            continue
        if pending and role != "tool":
            problems.append(f"{where}: tool calls {pending} are not answered before a {role} message")
            pending = []
        if role == "system" and i != 0:
            problems.append(f"{where}: a system message after the first message")
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
            problems.append(f"{where}: weight is 0 or 1, on assistant messages only")
        content = message.get("content")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                problems.append(f"{where}: tool_call_id {call_id!r} answers no pending tool call")
            else:
                pending.remove(call_id)
            if not isinstance(content, str):
                problems.append(f"{where}: tool content must be a string")
            continue
        if "tool_call_id" in message:
            problems.append(f"{where}: tool_call_id on a {role} message")
        calls = message.get("tool_calls")
        if role != "assistant":
            if not isinstance(content, str) or not content:
                problems.append(f"{where}: {role} content must be a non-empty string")
            if calls is not None:
                problems.append(f"{where}: tool_calls on a {role} message")
            continue
        if not (isinstance(content, str) or (content is None and calls)):
            problems.append(f"{where}: assistant content must be a string (or null beside tool_calls)")
        if calls is None:
            continue
        if not isinstance(calls, list) or not calls:
            problems.append(f"{where}: tool_calls must be a non-empty list")
            continue
        for j, call in enumerate(calls):
            problems.extend(_check_call(call, f"{where}.tool_calls[{j}]", schemas, ids, pending, jsonschema))
    if pending:
        problems.append(f"tool calls {pending} are never answered")
    last = messages[-1]
    if not (isinstance(last, dict) and last.get("role") == "assistant" and isinstance(last.get("content"), str)
            and not last.get("tool_calls")):
        problems.append("the last message must be an assistant message with text and no tool calls")
    return problems


def _tool_schemas(tools: Any, problems: list[str]) -> dict[str, dict]:
    schemas: dict[str, dict] = {}
    if not isinstance(tools, list):
        problems.append("tools must be a list")
        return schemas
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not (isinstance(tool, dict) and tool.get("type") == "function" and isinstance(function, dict)
                and isinstance(function.get("name"), str) and isinstance(function.get("parameters"), dict)):
            problems.append(f"tools[{i}]: not a function tool with a name and parameters")
            continue
        schemas[function["name"]] = function["parameters"]
    return schemas


def _check_call(call: Any, where: str, schemas: dict[str, dict], ids: set[str], pending: list[str], jsonschema) -> list[str]:
    if not (isinstance(call, dict) and call.get("type") == "function" and isinstance(call.get("function"), dict)):
        return [f"{where}: not a function call"]
    problems = []
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id or call_id in ids:
        problems.append(f"{where}: id {call_id!r} missing or used before")
    else:
        ids.add(call_id)
        pending.append(call_id)
    name, arguments = call["function"].get("name"), call["function"].get("arguments")
    if name not in schemas:
        return [*problems, f"{where}: {name!r} is not one of the record's tools"]
    if not isinstance(arguments, str):
        return [*problems, f"{where}: arguments must be a JSON string"]
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        return [*problems, f"{where}: arguments are not JSON ({exc.msg})"]
    validator = jsonschema.Draft202012Validator(schemas[name])
    problems.extend(f"{where}: {name} {'/'.join(map(str, e.path)) or 'arguments'}: {e.message}" for e in validator.iter_errors(parsed))
    return problems


def chat_record(note_id: str, system: str, user: str, steps: list, codes: list[dict], gold: list[str],
                f1: float, meta: dict[str, Any]) -> dict[str, Any]:
    """One line of the dataset: the chat (`messages`, `tools`) and, beside it, the final codes
    with their evidence, the gold codes, the note's code F1 and where the record comes from.
    The last assistant turn is {"codes": codes} as JSON."""
    from icd_graph.tools import specs

    answer = json.dumps({"codes": codes}, ensure_ascii=False)
    return {"id": note_id, "messages": chat_messages(system, user, steps, answer), "tools": specs(),
            "codes": codes, "gold": list(gold), "f1": f1, "meta": meta}


def replay(record: dict[str, Any], kb) -> list[str]:
    """The tool calls of `record` whose result, called again on `kb`, differs from the recorded
    tool message (empty when every one is the same)."""
    from icd_graph.tools import call

    answers = {m["tool_call_id"]: m["content"] for m in record["messages"] if m["role"] == "tool"}
    differences = []
    for message in record["messages"]:
        for tool_call in message.get("tool_calls") or ():
            name, arguments = tool_call["function"]["name"], json.loads(tool_call["function"]["arguments"])
            if encode(call(kb, name, arguments)) != answers.get(tool_call["id"]):
                differences.append(f"{record['id']} {tool_call['id']}: {name}({tool_call['function']['arguments']}) answers differently")
    return differences
