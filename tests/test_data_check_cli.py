"""`relex data check`: the report, exit codes, and one-line errors without a traceback."""

from __future__ import annotations

import io
import json
import re
import subprocess
from collections import Counter
import sys
from pathlib import Path

import pytest

from relex.cli import main
from relex.data.commands import _Out

sys.path.insert(0, str(Path(__file__).parent))
from test_data_io import ROWS, competition_frame, records, write_csv, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    rc = main(["data", "check", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_clean_file_report(tmp_path, capsys):
    path = write_json(tmp_path / "a.json", records())
    rc, out, err = run(capsys, path)
    assert rc == 0 and err == ""
    assert f"{path} (json): 7 rows, 7 valid, 0 bad" in out
    assert "labels: 5 (found in the file); negative label: no_relation" in out
    # label counts and shares, computed from ROWS
    for label in {r[5] for r in ROWS}:
        n = sum(r[5] == label for r in ROWS)
        assert re.search(rf"^  {re.escape(label)} +{n} +{100 * n / 7:.1f}%$", out, re.M), label
    # entity type pairs, most frequent first
    pairs = Counter(f"{r[2]} → {r[4]}" for r in ROWS)
    for pair, n in pairs.items():
        assert re.search(rf"^  {pair} +{n} +{100 * n / 7:.1f}%$", out, re.M), pair
    top = pairs.most_common(1)[0][0]
    assert all(out.index(top) < out.index(p) for p in pairs if p != top)
    lens = sorted(len(r[0]) for r in ROWS)
    assert re.search(rf"^ +{lens[0]} +{sum(lens) / 7:.1f} +{lens[3]} +\d+ +{lens[-1]}$", out, re.M)
    assert "wikitree" in out and "OK: all 7 rows are valid" in out


def test_label_list_and_negative_flags(tmp_path, capsys):
    rel = tmp_path / "relation_list.json"
    order = ["no_relation", "per:title", "per:parents", "org:founded", "org:place_of_headquarters",
             "org:dissolved"]
    rel.write_text(json.dumps({"relations": order}), encoding="utf-8")
    path = write_csv(tmp_path / "a.csv", competition_frame(records()))
    rc, out, _ = run(capsys, path, "--labels", rel)
    assert rc == 0
    assert f"labels: 6 ({rel}); negative label: no_relation" in out
    assert re.search(r"^  org:dissolved +0 +0\.0%$", out, re.M)  # listed although unused
    assert [ln.split()[0] for ln in out.splitlines() if ln.startswith("  org:") or ln.startswith("  per:")
            or ln.startswith("  no_relation")] == order
    rows = [r[:5] + ("관계없음" if r[5] == "no_relation" else r[5],) + r[6:] for r in ROWS]
    ko = write_json(tmp_path / "ko.json", records(rows))
    rc, out, _ = run(capsys, ko)
    assert rc == 0 and "negative label: 관계없음" in out  # detected
    rc, out, err = run(capsys, ko, "--negative-label", "per:title")
    assert rc == 0 and "negative label: per:title" in out
    rc, out, err = run(capsys, ko, "--negative-label", "nope")
    assert rc == 2 and "the negative label 'nope' does not occur" in err


def test_bad_rows_are_listed_and_exit_2(tmp_path, capsys):
    frame = competition_frame(records())
    frame.loc[2, "subject_entity"] = "{'word': '삼성', 'start_idx': 0, 'end_idx': 3, 'type': 'ORG'}"
    frame.loc[4, "object_entity"] = "{'word': '선수', 'start_idx': 16"
    path = write_csv(tmp_path / "train.csv", frame)
    rc, out, err = run(capsys, path)
    assert rc == 2
    assert f"{path} (csv): 7 rows, 5 valid, 2 bad" in out
    assert re.search(r"^ +3 +CSV line 4 +r2 +subject_entity: sentence\[0:3\+1\] is '삼성전자' but word "
                     r"is '삼성'", out, re.M)
    assert re.search(r"^ +5 +CSV line 6 +r4 +object_entity is not a valid dict string", out, re.M)
    assert "2 bad rows: fix them, or pass --skip-bad-rows" in out
    rc, out, _ = run(capsys, path, "--skip-bad-rows")
    assert rc == 0 and "dropped 2 bad rows (--skip-bad-rows); 5 valid rows remain" in out
    assert re.search(r"^  no_relation +2 +40\.0%$", out, re.M)  # stats of the valid rows


def test_many_bad_rows_show_twenty(tmp_path, capsys):
    recs = []
    for i in range(30):
        r = records()[i % 7]
        r["guid"] = f"x{i}"
        r["label"] = "" if i % 3 else r["label"]
        recs.append(r)
    path = write_json(tmp_path / "m.json", recs)
    rc, out, _ = run(capsys, path)
    assert rc == 2 and "Bad rows (20;" in out and "... and 0 more" not in out
    assert len(re.findall(r"label is missing or empty", out)) == 20
    recs = [dict(r, label="") for r in recs]
    write_json(path, recs)
    rc, out, _ = run(capsys, path, "--skip-bad-rows")
    assert rc == 2 and "... and 10 more bad rows" in out and "no valid rows remain" in out


def test_unlabelled_file(tmp_path, capsys):
    recs = records()
    for r in recs:
        del r["label"]
    path = write_json(tmp_path / "test.json", recs)
    rc, _, err = run(capsys, path)
    assert rc == 2 and "missing column 'label'" in err
    rc, out, _ = run(capsys, path, "--unlabeled")
    assert rc == 0 and "7 valid" in out and "Labels" not in out


@pytest.mark.parametrize("kind", ["missing", "extension", "empty", "cp949", "columns", "json"])
def test_file_errors_are_one_line(tmp_path, capsys, kind):
    path = tmp_path / "f.csv"
    if kind == "missing":
        want = "file not found"
    elif kind == "extension":
        path = tmp_path / "f.xlsx"
        path.write_bytes(b"PK")
        want = "unknown file type '.xlsx'"
    elif kind == "empty":
        path.write_text("")
        want = "the file is empty"
    elif kind == "cp949":
        competition_frame(records()).to_csv(path, index=False, encoding="cp949")
        want = "CP949/EUC-KR"
    elif kind == "columns":
        write_csv(path, competition_frame(records()).rename(columns={"object_entity": "obj"}))
        want = "missing column 'object_entity'"
    else:
        path = tmp_path / "f.json"
        path.write_text("[{", encoding="utf-8")
        want = "invalid JSON at line 1"
    rc, out, err = run(capsys, path)
    assert rc == 2 and out == ""
    assert err.startswith(f"relex: error: {path}: ") and want in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_rich_tables_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    out = _Out(s)
    assert out.rich
    out.table("Labels (2)", ["label", "count"], [["관계없음", "3"], ["곤충:특성", "12"]], right=(1,))
    text = s.getvalue()
    assert "Labels (2)" in text and "관계없음" in text
    assert "│" in text or "┃" in text  # drawn as a table
    plain = io.StringIO()
    _Out(plain).table("T", ["a", "b"], [["관계없음", "3"]], right=(1,))
    assert plain.getvalue() == "T:\n  a         b\n  관계없음  3\n\n"


def test_console_script_prints_no_traceback(tmp_path):
    relex = ROOT / ".venv" / "bin" / "relex"
    if not relex.exists():
        pytest.skip("no .venv/bin/relex (run `make install`)")
    bad = tmp_path / "bad.csv"
    write_csv(bad, competition_frame(records()).rename(columns={"subject_entity": "subj"}))
    p = subprocess.run([str(relex), "data", "check", str(bad)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2
    assert p.stderr == (f"relex: error: {bad}: missing column 'subject_entity' (found: 'id', "
                        f"'sentence', 'subj', 'object_entity', 'label', 'source'); rename 'subj' "
                        f"to 'subject_entity'\n")
    assert p.stdout == ""


def test_malformed_dict_string_row(tmp_path, capsys):
    frame = competition_frame(records())
    frame.loc[0, "subject_entity"] = "{'word': '비틀즈', 'start_idx': 24, 'end_idx': 26, 'type': ‘ORG'}"
    path = write_csv(tmp_path / "bad.csv", frame)
    rc, out, err = run(capsys, path)
    assert rc == 2 and err == ""
    assert re.search(r"^ +1 +CSV line 2 +r0 +subject_entity is not a valid dict string", out, re.M)
    assert "1 bad row: fix it, or pass --skip-bad-rows" in out


@pytest.mark.shared
def test_check_klue_json_and_csv(shared_data, capsys):
    d = shared_data / "klue-re"
    for name, kind in (("klue-re-v1.1_train.json", "json"), ("train.csv", "csv")):
        rc, out, _ = run(capsys, d / name)
        assert rc == 0, out
        assert f"({kind}): 32,470 rows, 32,470 valid, 0 bad" in out
        assert "Labels (30)" in out and re.search(r"^  no_relation +9,534 +29\.4%$", out, re.M)


@pytest.mark.shared
def test_check_insects_reports_bad_rows_by_row(shared_data, capsys):
    path = shared_data / "insects-re" / "train.csv"
    rc, out, _ = run(capsys, path)
    assert rc == 2
    m = re.search(r"1,021 rows, ([\d,]+) valid, (\d+) bad", out)
    assert m and int(m.group(1).replace(",", "")) + int(m.group(2)) == 1021
    n_bad = int(m.group(2))
    assert 10 <= n_bad <= 30
    assert "Labels (14)" in out and "negative label: 관계없음" in out
    listed = re.findall(r"^ +(\d+) +CSV line (\d+) +\d+ +\w+_entity is not a valid dict string", out, re.M)
    assert len(listed) == min(n_bad, 20)
    assert all(int(line) == int(row) + 1 for row, line in listed)
    rc, out, _ = run(capsys, path, "--skip-bad-rows", "--negative-label", "관계없음")
    assert rc == 0 and f"dropped {n_bad} bad rows" in out
