"""Issue 5 item 7: no row id, metadata value, prompt or fal ``file_name`` can make the archive write
outside its root. Runs the real DAG (`airflow dags test`) over a hostile CSV, snapshots the folder
around the archive root before and after, and checks every name the archive created.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from security_helpers import snapshot, write_csv

from fal_video.archive import Archive, safe_name
from fal_video.batch import run_folder_name

HEX_FILE = re.compile(r"[0-9a-f]{16,128}\.(mp4|jpg|json)")


def test_hostile_ids_metadata_prompts_and_file_names_stay_inside_the_root(run_dag, sec_emulator, tmp_path: Path):
    tag = secrets.token_hex(4)
    abs_target = Path(f"/tmp/sec-abs-{tag}")
    hostile_ids = [f"../../escape-{tag}", str(abs_target), f"..\\..\\win-{tag}", "z" * 5000, "CON", "NUL.txt",
                   "aux", f"dot/../../slash-{tag}", "~root", "a\x00b"]  # fmt: skip
    rows = [
        {"id": row_id, "prompt": f"a hostile row number {i} XNAME{i}", "path": f"../../../meta-{tag}-{i}",
         "file": f"/tmp/sec-meta-{tag}-{i}", "note": "x\x00y"}
        for i, row_id in enumerate(hostile_ids)
    ]  # fmt: skip
    rows.append({"id": "prompt-path", "prompt": f"../../prompt-{tag}/../../etc/passwd"})
    # fal's File names are untrusted too: they must never become a path.
    sec_emulator.add_fault("malformed_result", count=None, prompt_contains="XNAME0", variant="url",
                           file_name=f"../../fal-name-{tag}.mp4")  # fmt: skip
    sec_emulator.add_fault("malformed_result", count=None, prompt_contains="XNAME1", variant="url",
                           file_name=f"/tmp/sec-abs-file-{tag}.mp4")  # fmt: skip
    sec_emulator.add_fault("malformed_result", count=None, prompt_contains="XNAME2", variant="url",
                           file_name="CON")  # fmt: skip

    box = tmp_path / "box"
    archive = box / "deep" / "archive"
    archive.mkdir(parents=True)
    (box / "sibling.txt").write_text("must stay alone")
    csv_path = write_csv(tmp_path / "prompts.csv", rows)
    outside_before = snapshot(tmp_path)
    tmp_before = set(Path("/tmp").iterdir())

    result = run_dag(csv_path, archive, chunk_size=6)
    assert result.returncode == 0, result.output[-4000:]

    # Every row is accounted for under its own (unchanged) id, and the videos were archived.
    manifest = result.manifest
    assert [r["row_id"] for r in manifest] == [r["id"] for r in rows]
    assert {r["status"] for r in manifest} == {"succeeded"}, [(r["row_id"][:30], r["reason"]) for r in manifest]

    # Nothing new outside the archive root; nothing new in /tmp named after a row or a fal file name.
    new_outside = {p for p in snapshot(tmp_path) - outside_before if not p.startswith("box/deep/archive")}
    assert new_outside == set(), sorted(new_outside)
    new_tmp = {p.name for p in set(Path("/tmp").iterdir()) - tmp_before}
    assert not any(tag in name for name in new_tmp), new_tmp
    assert not abs_target.exists()

    # Inside: videos/ holds only <hex job key>.mp4|jpg|json, the ledger only hex names, one safe run folder.
    videos = sorted(p.name for p in (archive / "videos").iterdir())
    assert videos and all(HEX_FILE.fullmatch(name) for name in videos), videos
    assert len(videos) == 3 * len(rows)
    for row in manifest:
        assert row["video_path"] == f"videos/{row['job_key']}.mp4" and HEX_FILE.fullmatch(row["video_path"][7:])
    ledger = sorted(p.name for p in (archive / "ledger").iterdir())
    assert ledger and all(re.fullmatch(r"[0-9a-f]+\.(json|claim)", n) for n in ledger), ledger
    (run_dir,) = list((archive / "runs").iterdir())
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,120}", run_dir.name)
    top = {p.name for p in archive.iterdir()}
    assert top <= {"videos", "ledger", "runs", ".partial"}, top
    for path in archive.rglob("*"):
        assert path.resolve().is_relative_to(archive.resolve()) and not path.is_symlink(), path


@pytest.mark.parametrize(
    "name",
    ["../x", "/etc/passwd", "a/b", "a\x00b", "x" * 129, "CON", "nul", "Com1", "lpt9", "", ".hidden", "NUL.txt",
     "a\\b", "C:evil", "~", "a b"],
)  # fmt: skip
def test_archive_refuses_any_name_that_is_not_a_plain_file_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsafe archive name"):
        safe_name(name)
    with pytest.raises(ValueError):
        Archive(str(tmp_path)).paths(name)


@pytest.mark.parametrize(
    "run_id",
    ["../../../etc", "/abs/path", "a\x00b", "manual__2026-01-01T00:00:00+00:00", "x" * 5000, "CON", "nul.txt",
     "..", ".", "", "aux.tar.gz", "COM1"],
)  # fmt: skip
def test_run_folder_names_are_single_safe_non_reserved_components(run_id: str, tmp_path: Path) -> None:
    name = run_folder_name(run_id)
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,120}", name) and name not in (".", "..")
    assert name.split(".")[0].lower() not in {"con", "prn", "aux", "nul", "com1", "lpt1"}
    assert (tmp_path / "runs" / name).resolve().parent == (tmp_path / "runs").resolve()
