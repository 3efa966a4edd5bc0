"""read_prompts: the CSV rules of issue 4 and fault scenarios C1 (encoding) and C3 (empty input)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fal_video.prompts import (
    STRICT_ERROR_CAP,
    PromptError,
    PromptFileError,
    PromptTable,
    PromptValidationError,
    read_prompts,
)

MOCHI = "fal-ai/mochi-v1"
KLING = "fal-ai/kling-video/v2/master/text-to-video"


def write(tmp_path: Path, content: str | bytes, name: str = "prompts.csv") -> str:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return str(path)


def read(path: str, **kwargs) -> PromptTable:
    kwargs.setdefault("default_endpoint", MOCHI)
    return read_prompts(path, **kwargs)


# --- C1: encoding and headers ------------------------------------------------------------------


def test_bom_and_quoted_headers_are_parsed(tmp_path):
    path = write(tmp_path, b'\xef\xbb\xbf"prompt","seed"\r\n"a cat on a mat",42\r\n')
    table = read(path)
    assert table.columns == ["prompt", "seed"]
    assert [row.arguments for row in table.rows] == [{"prompt": "a cat on a mat", "seed": 42}]


def test_header_spaces_and_case_are_ignored_and_values_trimmed(tmp_path):
    path = write(tmp_path, " Prompt ,  SEED , Category \n  a dog  , 7 ,  animal \n")
    (row,) = read(path).rows
    assert (row.prompt, row.arguments, row.metadata) == (
        "a dog",
        {"prompt": "a dog", "seed": 7},
        {"category": "animal"},
    )


def test_non_utf8_file_names_file_byte_offset_and_line(tmp_path):
    path = write(tmp_path, "prompt\nfirst\ncaf\u00e9 at night\n".encode("latin-1"))
    with pytest.raises(PromptFileError) as caught:
        read(path)
    message = str(caught.value)
    assert path in message
    assert "byte 0xe9 at offset 16 (line 3, column 4)" in message
    assert "UTF-8" in message


def test_utf16_file_gets_a_clear_error(tmp_path):
    path = write(tmp_path, "prompt\na cat\n".encode("utf-16"))
    with pytest.raises(PromptFileError, match="UTF-16"):
        read(path)


# --- C3: nothing to read -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "note"),
    [
        (b"", "empty file: no rows"),
        (b"\xef\xbb\xbf", "empty file: no rows"),  # a BOM and nothing else
        (b"prompt,seed,category\n", "header only: no data rows"),
        (b"\n\n   \r\n\t\n", "only blank lines: no rows"),
    ],
    ids=["zero-bytes", "bom-only", "header-only", "blank-lines-only"],
)
def test_empty_inputs_give_no_rows_and_a_note(tmp_path, content, note):
    table = read(write(tmp_path, content))
    assert table.rows == []
    assert table.note == note


def test_missing_prompt_column_names_file_and_found_columns(tmp_path):
    path = write(tmp_path, "id,text,seed\n1,a cat,3\n")
    with pytest.raises(PromptFileError) as caught:
        read(path)
    assert str(caught.value) == f"{path} has no 'prompt' column (found 'id', 'text', 'seed')."


def test_semicolon_separated_file_gets_a_hint(tmp_path):
    with pytest.raises(PromptFileError, match="another separator"):
        read(write(tmp_path, "prompt;seed\na cat;3\n"))


def test_duplicate_column_names_are_an_error(tmp_path):
    with pytest.raises(PromptFileError, match="column 'prompt' appears twice"):
        read(write(tmp_path, "prompt,Prompt\na,b\n"))


# --- structure: multi-line prompts, blank lines, malformed rows ---------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_multiline_prompts_keep_the_line_each_row_starts_on(tmp_path, newline):
    lines = [
        "id,prompt",  # 1
        'a,"first line',  # 2
        "second line",  # 3
        'third line"',  # 4
        "",  # 5 blank
        "b,single",  # 6
        'c,"two',  # 7
        'lines"',  # 8
        "d,last",  # 9
    ]
    table = read(write(tmp_path, newline.join(lines) + newline))
    assert [(row.row_id, row.line) for row in table.rows] == [("a", 2), ("b", 6), ("c", 7), ("d", 9)]
    assert table.rows[0].prompt == newline.join(["first line", "second line", "third line"])


def test_rows_of_only_separators_are_blank(tmp_path):
    table = read(write(tmp_path, "prompt,seed\n,\na cat,1\n , \n"))
    assert [row.line for row in table.rows] == [3]


def test_unclosed_quote_is_a_file_error_naming_the_line(tmp_path):
    path = write(tmp_path, 'prompt,seed\na cat,1\n"never closed,2\nmore\n')
    with pytest.raises(PromptFileError, match=r"line 3: malformed CSV"):
        read(path)


def test_row_with_extra_values_is_rejected_and_short_row_is_padded(tmp_path):
    table = read(write(tmp_path, "prompt,seed\na cat,1,surprise\na dog\na cow,2,\n"))
    assert [row.error for row in table.rows] == [
        "prompts.csv line 2, the row has 3 values but the header has 2 columns",
        None,
        None,
    ]
    assert table.rows[1].arguments == {"prompt": "a dog"}


# --- ids and duplicates ----------------------------------------------------------------------


def test_same_id_with_different_content_is_an_error_naming_id_and_lines(tmp_path):
    path = write(tmp_path, "id,prompt\nx1,a cat\nx2,a dog\nx1,a cow\n")
    with pytest.raises(PromptFileError) as caught:
        read(path)
    assert "id 'x1' is used on line 2 and line 4 for different content" in str(caught.value)


def test_same_id_with_identical_content_keeps_both_rows_sharing_one_job(tmp_path):
    table = read(write(tmp_path, "id,prompt,note\nx1,a cat,first\nx1,a cat,second\n"))
    first, second = table.rows
    assert (first.line, second.line) == (2, 3)
    assert first.job_key == second.job_key
    assert (first.metadata, second.metadata) == ({"note": "first"}, {"note": "second"})


def test_derived_ids_are_stable_and_follow_the_content(tmp_path):
    table = read(write(tmp_path, "prompt,seed\na cat,1\na dog,1\na cat,1\na cat,2\n"))
    ids = [row.row_id for row in table.rows]
    assert ids[0] == ids[2] != ids[1]
    assert ids[3] not in (ids[0], ids[1])
    assert all(len(row_id) == 13 and row_id.startswith("r") for row_id in ids)
    again = read(write(tmp_path, "prompt,seed\na cat,1\n", name="other.csv"))
    assert again.rows[0].row_id == ids[0]


# --- arguments, metadata and the catalog ------------------------------------------------------


def test_unknown_columns_become_metadata_and_cells_stay_strings(tmp_path):
    table = read(write(tmp_path, "prompt,category,score,flag\nNA,animal,007,\nnull,,1.5,NaN\n"))
    first, second = table.rows
    assert first.arguments == {"prompt": "NA"}
    assert first.metadata == {"category": "animal", "score": "007"}  # empty cells are left out
    assert second.metadata == {"score": "1.5", "flag": "NaN"}


def test_model_columns_are_coerced_with_catalog_types(tmp_path):
    content = (
        "prompt,endpoint,duration,seed,num_frames,loop,aspect_ratio\n"
        f"a,{KLING},5,,,,9:16\n"
        "b,fal-ai/veo3,8s,42,,,\n"
        "c,fal-ai/wan-t2v,,7,85,,\n"
        "d,fal-ai/luma-dream-machine,,,,true,\n"
    )
    args = [row.arguments for row in read(write(tmp_path, content)).rows]
    assert args == [
        {"prompt": "a", "duration": "5", "aspect_ratio": "9:16"},
        {"prompt": "b", "duration": "8s", "seed": 42},
        {"prompt": "c", "seed": 7, "num_frames": 85},
        {"prompt": "d", "loop": True},
    ]


def test_column_is_metadata_for_a_model_without_that_field(tmp_path):
    (row,) = read(write(tmp_path, f"prompt,endpoint,duration\na cat,{MOCHI},5\n")).rows
    assert row.arguments == {"prompt": "a cat"}
    assert row.metadata == {"duration": "5"}


def test_invalid_values_are_rejected_with_file_line_and_field(tmp_path):
    content = (
        "prompt,endpoint,duration,num_frames,seed\n"
        f"fine,{KLING},10,,\n"
        f"too long,{KLING},7,,\n"
        "bad frames,fal-ai/wan-t2v,,200,x\n"
        f",{MOCHI},,,\n"
    )
    table = read(write(tmp_path, content))
    assert [row.error for row in table.rows] == [
        None,
        "prompts.csv line 3, field 'duration': Input should be '5' or '10' (got '7')",
        "prompts.csv line 4, field 'num_frames': Input should be less than or equal to 100 (got '200'); "
        "field 'seed': Input should be a valid integer, unable to parse string as an integer (got 'x')",
        "prompts.csv line 5, field 'prompt': Field required",
    ]
    assert [row.error_field for row in table.rows] == [None, "duration", "num_frames", "prompt"]
    assert table.rows[1].arguments["duration"] == "7"  # what was asked for, for the manifest
    assert [row.line for row in table.rejected] == [3, 4, 5]
    assert [row.line for row in table.valid] == [2]


def test_required_field_without_a_column_is_reported(tmp_path):
    (row,) = read(write(tmp_path, "prompt\na cat walks\n"), default_endpoint="fal-ai/veo3/image-to-video").rows
    assert row.error == "prompts.csv line 2, field 'image_url': Field required"


# --- default arguments ------------------------------------------------------------------------


def test_default_arguments_apply_under_row_values_and_only_to_model_inputs(tmp_path):
    content = f"prompt,endpoint,duration,aspect_ratio\na,{KLING},,\nb,{KLING},10,1:1\nc,{MOCHI},,\n"
    defaults = {"duration": 5, "aspect_ratio": "9:16", "seed": 3, "prompt": "ignored"}
    args = [row.arguments for row in read(write(tmp_path, content), default_arguments=defaults).rows]
    assert args == [
        {"prompt": "a", "duration": "5", "aspect_ratio": "9:16"},  # int 5 is read like the cell "5"
        {"prompt": "b", "duration": "10", "aspect_ratio": "1:1"},
        {"prompt": "c", "seed": 3},  # mochi has no duration or aspect_ratio, but a seed
    ]


def test_invalid_default_argument_says_where_the_value_came_from(tmp_path):
    (row,) = read(write(tmp_path, "prompt\na\n"), default_endpoint=KLING, default_arguments={"duration": "7"}).rows
    assert (
        row.error
        == "prompts.csv line 2, field 'duration': Input should be '5' or '10' (got '7' from default_arguments)"
    )


# --- endpoints ---------------------------------------------------------------------------------


def test_endpoint_and_model_columns_choose_the_model(tmp_path):
    content = f"prompt,MODEL\na,{KLING}/\nb,\n"
    table = read(write(tmp_path, content))
    assert [row.endpoint for row in table.rows] == [KLING, MOCHI]


def test_both_endpoint_and_model_columns_is_an_error(tmp_path):
    with pytest.raises(PromptFileError, match="both an 'endpoint' and a 'model' column"):
        read(write(tmp_path, f"prompt,endpoint,model\na,{MOCHI},{MOCHI}\n"))


def test_malformed_or_missing_endpoint_rejects_the_row(tmp_path):
    table = read(write(tmp_path, "prompt,endpoint\na,mochi\nb,\n"), default_endpoint="")
    assert [row.error for row in table.rows] == [
        "prompts.csv line 2, field 'endpoint': 'mochi' is not a fal endpoint id such as 'fal-ai/mochi-v1'",
        "prompts.csv line 3, field 'endpoint': the row names no endpoint and no default endpoint was given",
    ]


def test_uncatalogued_endpoint_gets_known_inputs_as_strings_and_all_defaults(tmp_path):
    content = "prompt,seed,duration,category\na cat,42,12,animal\n"
    (row,) = read(
        write(tmp_path, content),
        default_endpoint="acme/new-video-model",
        default_arguments={"guidance": 3.5, "duration": "6"},
    ).rows
    assert row.error is None
    assert row.arguments == {"prompt": "a cat", "seed": "42", "duration": "12", "guidance": 3.5}
    assert row.metadata == {"category": "animal"}


# --- strict mode, limit, sample, size -------------------------------------------------------------


def test_strict_mode_raises_listing_every_invalid_row(tmp_path):
    content = "prompt,duration\nok,5\nbad,7\n,5\nalso bad,3\n"
    with pytest.raises(PromptValidationError) as caught:
        read(write(tmp_path, content), default_endpoint=KLING, strict=True)
    error = caught.value
    assert [row.line for row in error.rows] == [3, 4, 5]
    assert "3 of 4 rows are invalid" in str(error)
    for line in (3, 4, 5):
        assert f"prompts.csv line {line}," in str(error)


def test_strict_mode_caps_the_listing(tmp_path):
    content = "prompt,duration\n" + "".join(f"p{i},7\n" for i in range(STRICT_ERROR_CAP + 5))
    with pytest.raises(PromptValidationError) as caught:
        read(write(tmp_path, content), default_endpoint=KLING, strict=True)
    assert len(caught.value.rows) == STRICT_ERROR_CAP + 5
    assert str(caught.value).count("Input should be") == STRICT_ERROR_CAP
    assert "... and 5 more" in str(caught.value)


def test_strict_mode_with_valid_rows_returns_the_table(tmp_path):
    assert len(read(write(tmp_path, "prompt\na\nb\n"), strict=True)) == 2


def test_limit_keeps_the_first_rows_and_skips_validating_the_rest(tmp_path):
    content = "prompt,seed\n" + "".join(f"p{i},{i}\n" for i in range(10)) + "bad,x\n"
    table = read(write(tmp_path, content), limit=3, strict=True)
    assert [row.prompt for row in table.rows] == ["p0", "p1", "p2"]
    assert table.rows_in_file == 11
    assert table.note == "first 3 of 11 rows (limit 3)"


def test_sample_is_reproducible_and_in_file_order(tmp_path):
    path = write(tmp_path, "prompt\n" + "".join(f"p{i}\n" for i in range(100)))
    first = [row.line for row in read(path, sample=10, sample_seed=7).rows]
    assert first == [row.line for row in read(path, sample=10, sample_seed=7).rows]
    assert first == sorted(first) and len(set(first)) == 10
    assert first != [row.line for row in read(path, sample=10, sample_seed=8).rows]
    assert len(read(path, sample=500).rows) == 100  # asking for more than there is keeps everything


@pytest.mark.parametrize("bad", [{"limit": 0}, {"sample": -1}, {"limit": "5"}])
def test_limit_and_sample_must_be_positive(tmp_path, bad):
    with pytest.raises(PromptError, match="positive whole number"):
        read(write(tmp_path, "prompt\na\n"), **bad)


def test_more_than_1024_rows(tmp_path):
    rows = 3000
    content = "id,prompt,duration\n" + "".join(f"id{i},prompt {i},{5 if i % 2 else 10}\n" for i in range(rows))
    table = read(write(tmp_path, content), default_endpoint=KLING)
    assert len(table.valid) == rows
    assert [row.line for row in table.rows] == list(range(2, rows + 2))
    assert len({row.job_key for row in table.rows}) == rows


# --- sources and errors -----------------------------------------------------------------------


def test_object_storage_uri_and_plain_path_read_the_same_rows(tmp_path):
    path = write(tmp_path, "prompt,seed\na cat,1\n")
    from_path = read(path)
    from_uri = read(Path(path).as_uri())
    assert from_uri.source == Path(path).as_uri()
    assert (
        [r.arguments for r in from_uri.rows]
        == [r.arguments for r in from_path.rows]
        == [{"prompt": "a cat", "seed": 1}]
    )


def test_missing_file_is_a_file_error(tmp_path):
    with pytest.raises(PromptFileError, match="does not exist"):
        read(str(tmp_path / "nope.csv"))
    with pytest.raises(PromptFileError, match="does not exist"):
        read((tmp_path / "nope.csv").as_uri())


def test_every_error_is_a_prompt_error_and_a_value_error():
    assert issubclass(PromptFileError, PromptError)
    assert issubclass(PromptValidationError, PromptError)
    assert issubclass(PromptError, ValueError)
