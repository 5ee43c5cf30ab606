"""Model profiles: how the agent talks tools with a model family. Configuration, not branches.

- `native`: the model emits OpenAI `tool_calls` (gpt-oss through vLLM with
  `--tool-call-parser openai`, OpenAI, Ollama); tool calls it writes as text are recovered.
- `text`: the text-action protocol for small local models: one ```bash block per turn runs
  through the exec tool; JSON calls in the text are recovered too; no tool schemas are sent.

Tool names the model sees follow what gpt-oss was trained on (an exec tool, `apply_patch`,
file browsing). `tool_aliases` maps a model-facing name to the MCP tool behind it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SYSTEM_PROMPT = """\
You are a software engineering agent working in a git repository checked out in your workspace.
Complete the user's task by using the tools: inspect the code, make changes, run commands and
tests to check your work. Paths are relative to the workspace root.

Tools:
- exec: run a shell command in the workspace (sandboxed; network only when the task allows it).
- apply_patch: edit files. The patch format is:
  *** Begin Patch
  *** Update File: path/to/file
  @@ optional line that precedes the change, to locate it
   unchanged context line
  -line to remove
  +line to add
  *** End Patch
  Use `*** Add File: path` with every line prefixed by +, and `*** Delete File: path`.
- read_file, list_files, search, git_status, git_diff: browse the repository.

Work in small verified steps. When the task is done, reply WITHOUT calling a tool: that reply
is your final answer; summarize what you found or changed.
"""

TEXT_PROTOCOL_PROMPT = """\
You are a coding agent working in a git repository (the current directory). You act by running
shell commands: each reply holds exactly ONE command in a ```bash block, then you see its output.
Never ask the user for anything: everything you need is in the repository.

Example of a whole task:
Task: Where is the retry count set?
You:
```bash
grep -rn --exclude-dir=.venv "retr" --include=*.py .
```
Output: ./client/http.py:12:MAX_RETRIES = 5
You: The retry count is MAX_RETRIES = 5, set in client/http.py on line 12.

Useful commands:
- find text: `grep -rn --exclude-dir=.venv PATTERN .`    read a file with line numbers: `cat -n FILE`
- list the repository's files: `git ls-files`
- write a whole file (give its complete new content):
```bash
cat > path/to/file.py <<'EOF'
the complete new content
EOF
```
- add lines at the end of a file: `cat >> FILE <<'EOF'` ... `EOF`
- change one line: `sed -i 's/old text/new text/' FILE`
- run a test: `python3 test_something.py`

After changing code, run the test to check it. When the task is complete, reply WITHOUT any
```bash block: one or two sentences saying what you found or changed, naming the files (and the
line, value or function asked for).
"""

TASK_HINTS = {
    "locate": "The start of the main files is shown above, with line numbers. Search with `grep -rn "
    "--exclude-dir=.venv` for the words of the task; answer with the file, the line number and the name asked for.",
    "fix": "The start of the main files is shown above. Run the failing test to see the error; fix the code it "
    "points to (`sed -i`, or the whole file again with `cat > FILE`); run the test again.",
    "add": "Read the file to change first; write the new code; then run it (or its test) to check it.",
    "summarize": "The start of the main files is shown above; read more with `cat -n FILE` if you need it, then say "
    "what the project does and how (its input, its output, where it keeps data), naming its main files and "
    "functions. Do not just list the files.",
    "config": "Show the file first (`cat -n`); change only the value asked for; show the file again.",
}
"""One line of advice per kind of task, for profiles that want it (small models)."""
TEXT_NUDGE_SUFFIX = "\nReply with ONE command in a ```bash block, for example:\n```bash\ncat -n README.md\n```"


class ModelProfile(BaseModel):
    """How to talk tools with one family of models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    protocol: Literal["native", "text"] = "native"
    recover_text_calls: bool = True
    system_prompt: str = SYSTEM_PROMPT
    tool_aliases: dict[str, str] = Field(default_factory=dict)
    shell_tool: str = "exec"
    temperature: float | None = None
    max_reply_tokens: int | None = None
    stop: tuple[str, ...] = Field(default=(), description="Stop sequences, e.g. the closing fence of a bash block")
    task_hints: bool = Field(False, description="Add a line of advice for the kind of task to the prompt")
    max_listed_files: int = Field(100, ge=0, description="Files the prompt lists (the rest: use list_files)")
    excerpt_chars: int = Field(
        0, ge=0, description="Show the head of the README and main source files in the prompt, this many characters"
    )
    excerpt_kinds: tuple[str, ...] = Field(("summarize",), description="The kinds of task (task_kind) that get it")
    excerpt_is_look: tuple[str, ...] = Field(
        ("summarize",), description="The kinds of task whose answer may rest on the excerpt alone, without a command"
    )
    nudge_suffix: str = Field("", description="Added to each nudge after a non-answer (how to call a tool)")
    nudge_unchanged: bool = Field(
        False, description="A task asking for a change is not done while no file has changed (one nudge, then FAILED)"
    )
    reasoning_effort: bool = Field(False, description="Send `reasoning_effort` (AGENTFLEET_REASONING_EFFORT)")
    keep_reasoning: bool = Field(
        False,
        description="Send each tool-calling reply's reasoning back with it (vLLM's `reasoning` field), so the "
        "model keeps its chain of thought across the tool calls of one turn",
    )

    def mcp_name(self, model_name: str) -> str:
        return self.tool_aliases.get(model_name, model_name)

    def model_name(self, mcp_name: str) -> str:
        for alias, target in self.tool_aliases.items():
            if target == mcp_name:
                return alias
        return mcp_name


PROFILES: dict[str, ModelProfile] = {
    # gpt-oss through vLLM's chat completions (harmony inside): vLLM reads `reasoning_effort` into the
    # system message and an assistant message's `reasoning` back into its analysis channel; it drops
    # the analysis of turns that ended in a final answer itself, as the harmony format asks.
    "gpt-oss": ModelProfile(name="gpt-oss", protocol="native", reasoning_effort=True, keep_reasoning=True),
    "native": ModelProfile(name="native", protocol="native"),
    "text": ModelProfile(
        name="text",
        protocol="text",
        system_prompt=TEXT_PROTOCOL_PROMPT,
        temperature=0.2,
        max_reply_tokens=512,
        stop=("\n```\n",),
        task_hints=True,
        max_listed_files=40,
        excerpt_chars=3500,
        excerpt_kinds=("summarize", "locate", "fix"),
        nudge_suffix=TEXT_NUDGE_SUFFIX,
        nudge_unchanged=True,
    ),
}

_BY_MODEL_NAME = [("gpt-oss", "gpt-oss"), ("qwen2.5-coder", "text"), ("gguf", "text")]


def profile_for(model: str, name: str = "auto") -> ModelProfile:
    """The profile called `name`, or for 'auto' the one that fits `model` best."""
    if name != "auto":
        try:
            return PROFILES[name]
        except KeyError:
            raise ValueError(f"unknown model profile {name!r}; choose one of: auto, {', '.join(PROFILES)}") from None
    lowered = model.lower()
    for needle, profile in _BY_MODEL_NAME:
        if needle in lowered:
            return PROFILES[profile]
    return PROFILES["native"]
