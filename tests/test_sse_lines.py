"""Server-sent event lines split at line ends only (a model's U+2028 once broke a stream chunk in two)."""

from __future__ import annotations

import asyncio
import json

from rrm_ui.backends.openai_http import sse_lines


async def _collect(chunks: list[str]) -> list[str]:
    async def gen():
        for c in chunks:
            yield c

    return [line async for line in sse_lines(gen())]


def test_separators_inside_json_strings_do_not_split_a_chunk() -> None:
    text = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg"  # what JSON leaves unescaped with ensure_ascii=False
    event = "data: " + json.dumps({"choices": [{"delta": {"content": text}}]}, ensure_ascii=False)
    stream = event + "\n\n" + "data: [DONE]\n\n"
    for size in (1, 3, 7, len(stream)):  # the stream arrives in pieces of any size
        pieces = [stream[k : k + size] for k in range(0, len(stream), size)]
        lines = [ln for ln in asyncio.run(_collect(pieces)) if ln]
        assert lines == [event, "data: [DONE]"]
        assert json.loads(lines[0][5:])["choices"][0]["delta"]["content"] == text


def test_crlf_and_cr_line_ends_and_a_last_line_without_one() -> None:
    lines = asyncio.run(_collect(["data: 1\r\n", "data: 2\r", "\ndata: 3\rdata: 4"]))
    assert [ln for ln in lines if ln] == ["data: 1", "data: 2", "data: 3", "data: 4"]
