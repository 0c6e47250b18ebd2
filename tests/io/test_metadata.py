from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from aam_core.io import (
    EmptyInputError,
    MetadataColumn,
    MetadataError,
    UnreadableFileError,
    align_metadata,
    read_metadata,
)
from aam_core.io.metadata import MISSING


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.tsv"
    path.write_text(text)
    return path


def test_columns_are_typed_by_content(tmp_path: Path) -> None:
    meta = read_metadata(
        _write(
            tmp_path,
            (
                "sample-id\tage\tsite\tcode\tph\n"
                "S1\t34.5\tgut\t001\t 7 \n"
                "S2\t41\tskin\tA2\t-1e-3\n"
                "S3\tNA\t gut \t003\t\n"
            ),
        )
    )
    assert [(c.name, c.kind) for c in meta.columns] == [
        ("age", "numeric"),
        ("site", "categorical"),
        ("code", "categorical"),
        ("ph", "numeric"),
    ]
    frame = meta.frame
    assert list(frame.index) == ["S1", "S2", "S3"]
    assert frame.index.name == "sample_id"
    assert frame["age"].dtype == np.float64 and frame["ph"].dtype == np.float64
    np.testing.assert_array_equal(frame["age"].to_numpy(), [34.5, 41.0, np.nan])
    np.testing.assert_array_equal(frame["ph"].to_numpy(), [7.0, -0.001, np.nan])
    assert frame["site"].dtype == object
    assert frame["site"].tolist() == ["gut", "skin", "gut"]  # whitespace stripped
    assert meta.column("site") == MetadataColumn("site", "categorical", 0, 2)
    # 34.5 and 41: two distinct values, not all whole numbers (not integer codes)
    assert meta.column("age") == MetadataColumn("age", "numeric", 1, None, 2, False)
    assert meta.column("ph") == MetadataColumn("ph", "numeric", 1, None, 2, False)
    assert meta.source == "m.tsv"


def test_q2_types_row_overrides_content_typing(tmp_path: Path) -> None:
    meta = read_metadata(
        _write(
            tmp_path,
            (
                "#SampleID\tsubject\tdepth\tnote\n"
                "#q2:types\tcategorical\tNumeric\t\n"
                "S1\t1\t10\tx\n"
                "S2\t2\t\t2\n"
                "S3\t1\t30\t3\n"
            ),
        )
    )
    assert [(c.name, c.kind) for c in meta.columns] == [
        ("subject", "categorical"),
        ("depth", "numeric"),
        ("note", "categorical"),
    ]
    assert meta.frame["subject"].tolist() == ["1", "2", "1"]
    assert meta.column("subject").n_classes == 2
    assert "#q2:types" not in meta.frame.index


def test_declared_numeric_column_must_hold_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path, "id\tage\n#q2:types\tnumeric\nS1\t3\nS2\tthree\nS3\tfour\n")
    with pytest.raises(MetadataError) as info:
        read_metadata(path, name="meta.tsv")
    assert str(info.value) == (
        "meta.tsv: column 'age' is declared numeric in #q2:types but 2 values are not numbers "
        "(e.g. 'three', 'four' in samples 'S2', 'S3')"
    )
    path = _write(tmp_path, "id\tage\n#q2:types\tinteger\nS1\t3\n")
    with pytest.raises(MetadataError) as info:
        read_metadata(path)
    assert str(info.value) == (
        "m.tsv: #q2:types declares 'integer' for column 'age'; expected 'numeric' or 'categorical'"
    )


def test_missing_value_tokens(tmp_path: Path) -> None:
    tokens = [
        "",
        "NA",
        "n/a",
        "nan",
        "NaN",
        "null",
        "None",
        "Not Applicable",
        "missing",
        "not provided",
        "NOT COLLECTED",
        "Restricted Access",
        "Missing: Not provided",
        "Missing: Not collected",
        "Missing: Not applicable",
        "Missing: Restricted access",
        "<not provided>",
        "missing: control sample",
    ]
    assert {t.lower() for t in tokens} <= MISSING
    rows = "".join(f"S{i}\t{t}\t{t}\n" for i, t in enumerate(tokens))
    meta = read_metadata(_write(tmp_path, f"id\tx\ty\n{rows}S98\t1.5\tred\nS99\t2\tblue\n"))
    assert meta.column("x") == MetadataColumn("x", "numeric", len(tokens), None, 2, False)
    assert meta.column("y") == MetadataColumn("y", "categorical", len(tokens), 2)
    assert meta.frame["y"].tolist() == [None] * len(tokens) + ["red", "blue"]
    assert math.isnan(meta.frame.loc["S1", "x"])


@pytest.mark.parametrize(
    "header",
    [
        *("#SampleID", "#sampleid", "sample-id", "SampleID", "sample_id", "ID", "id"),
        "Sample Name",
        # QIIME 2's (qiime2.metadata SUPPORTED_ID_HEADERS); 'sample_name' is Qiita's
        *("sampleid", "sample id", "Sample ID", "featureid", "feature id", "Feature-ID"),
        *("#Sample ID", "#OTUID", "#OTU ID", "sample_name"),
    ],
)
def test_accepted_id_headers(tmp_path: Path, header: str) -> None:
    meta = read_metadata(_write(tmp_path, f"# written by hand\n{header}\tage\nS1\t1\nS2\t2\n"))
    assert list(meta.frame.index) == ["S1", "S2"]
    assert meta.frame["age"].tolist() == [1.0, 2.0]


def test_comments_blank_lines_crlf_bom_and_short_rows(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    path.write_bytes(
        "\ufeffid\ta\tb\r\n# comment\r\n\r\nS1\t1\r\nS2\t2\tx\r\n#S3\t3\ty\r\n".encode()
    )
    meta = read_metadata(path)
    assert list(meta.frame.index) == ["S1", "S2"]
    assert meta.frame["b"].tolist() == [None, "x"]


def test_all_missing_column_is_reported(tmp_path: Path) -> None:
    meta = read_metadata(_write(tmp_path, "id\tempty\tage\nS1\tNA\t1\nS2\t\t2\n"))
    assert meta.warnings == ("metadata column 'empty' has no values",)


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (
            "subject\tage\nS1\t3\n",
            MetadataError,
            "m.tsv: the first column is 'subject', not a sample ID header; expected one of "
            "'#SampleID', '#Sample ID', 'sample-id', 'sample id', 'sampleid', 'sample_id', "
            "'sample_name', 'sample name', 'id', 'feature-id', 'feature id', 'featureid', "
            "'#OTUID', '#OTU ID' (any case)",
        ),
        (
            "id\tage\nS1\t1\nS2\t2\nS1\t3\nS3\t4\nS2\t5\nS1\t6\n",
            MetadataError,
            "m.tsv: 2 sample IDs appear more than once: 'S1', 'S2'",
        ),
        (
            "id\tage\nS1\t1\n\t2\n \t3\n",
            MetadataError,
            "m.tsv: 2 rows have an empty sample ID (lines 3, 4)",
        ),
        (
            "id\tage\n# only a comment\n",
            EmptyInputError,
            "m.tsv: the metadata has a header but no sample rows",
        ),
        ("# nothing\n\n", EmptyInputError, "m.tsv: the metadata file has no header line"),
        ("id\tage\nS1\t1\t2\n", MetadataError, "m.tsv: line 2 has 3 cells but the header has 2"),
        (
            "id\tage\tAge\nS1\t1\t2\n",
            MetadataError,
            "m.tsv: column names appear more than once: 'age'",
        ),
        (
            "id\t\tage\nS1\t1\t2\n",
            MetadataError,
            "m.tsv: 1 header cells are empty (columns 2); every column needs a name",
        ),
    ],
)
def test_invalid_metadata(tmp_path: Path, text: str, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        read_metadata(_write(tmp_path, text))
    assert str(info.value) == message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    path.write_bytes(b"id\tsite\nS1\t\xff\xfe\n")
    with pytest.raises(UnreadableFileError) as info:
        read_metadata(path)
    assert str(info.value) == "m.tsv: not a TSV file: it is not UTF-8 text"


def test_align_to_table_samples(tmp_path: Path) -> None:
    meta = read_metadata(
        _write(
            tmp_path,
            ("id\tage\tsite\nS1\t30\tgut\nS2\t40\tskin\nS3\t50\toral\nX1\t60\tgut\nX2\t70\tgut\n"),
        )
    )
    frame, n_missing, n_extra = align_metadata(meta, ["S3", "S9", "S1"])
    assert list(frame.index) == ["S3", "S9", "S1"]
    np.testing.assert_array_equal(frame["age"].to_numpy(), [50.0, np.nan, 30.0])
    assert frame["site"].tolist() == ["oral", None, "gut"]
    assert (n_missing, n_extra) == (1, 3)  # S9 has no row; S2, X1, X2 are not in the table


def test_metadata_of_another_study_is_refused(tmp_path: Path) -> None:
    meta = read_metadata(_write(tmp_path, "id\tage\nA1\t1\nA2\t2\nA3\t3\nA4\t4\n"))
    with pytest.raises(MetadataError) as info:
        align_metadata(meta, ["S1", "S2", "S3", "S4", "S5"])
    assert str(info.value) == (
        "m.tsv: no sample ID in the metadata matches the table; is it the metadata of another "
        "study? (metadata IDs: 'A1', 'A2', 'A3' and 1 more; table IDs: 'S1', 'S2', 'S3' and "
        "2 more)"
    )


def test_qiita_sample_name_and_insdc_missing_terms(tmp_path: Path) -> None:
    """A Qiita sample information file: 'sample_name' header, INSDC terms as missing values."""
    meta = read_metadata(
        _write(
            tmp_path,
            "sample_name\tage\tsite\n"
            "10317.A\t34\tgut\n"
            "10317.B\tMissing: Not provided\tnot collected\n"
            "10317.C\t<not provided>\tRestricted access\n"
            "10317.D\t2.5\tskin\n",
        )
    )
    assert list(meta.frame.index) == ["10317.A", "10317.B", "10317.C", "10317.D"]
    assert meta.column("age") == MetadataColumn("age", "numeric", 2, None, 2, False)
    assert meta.column("site") == MetadataColumn("site", "categorical", 2, 2)
    assert meta.frame["site"].tolist() == ["gut", None, None, "skin"]


def test_q2_missing_row_sets_the_missing_scheme_per_column(tmp_path: Path) -> None:
    # directives in either order; 'no-missing': "NA" and "not provided" are values
    meta = read_metadata(
        _write(
            tmp_path,
            "#SampleID\tage\tnote\tcode\tph\n"
            "#q2:missing\tINSDC:missing\tno-missing\tno-missing\t\n"
            "#q2:types\tnumeric\tcategorical\t\t\n"
            "S1\tnot applicable\tNA\t1\tNA\n"
            "S2\t41\tnot provided\t\t7\n"
            "S3\tmissing: third party data\t\t3\tnot collected\n"
            "S4\t3\tx\t4\t8\n",
        )
    )
    np.testing.assert_array_equal(meta.frame["age"].to_numpy(), [np.nan, 41.0, np.nan, 3.0])
    assert meta.frame["note"].tolist() == ["NA", "not provided", None, "x"]
    assert meta.column("note") == MetadataColumn("note", "categorical", 1, 3)
    np.testing.assert_array_equal(meta.frame["code"].to_numpy(), [1.0, np.nan, 3.0, 4.0])
    # no directive for 'ph': the default missing values
    np.testing.assert_array_equal(meta.frame["ph"].to_numpy(), [np.nan, 7.0, np.nan, 8.0])
    assert "#q2:missing" not in meta.frame.index


def test_insdc_missing_scheme_does_not_treat_na_as_missing(tmp_path: Path) -> None:
    meta = read_metadata(
        _write(tmp_path, "id\tsite\n#q2:missing\tINSDC:missing\nS1\tNA\nS2\tnot provided\n")
    )
    assert meta.frame["site"].tolist() == ["NA", None]


def test_no_missing_column_declared_numeric_refuses_insdc_terms(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "id\tage\n#q2:types\tnumeric\n#q2:missing\tno-missing\nS1\t3\nS2\tmissing\n"
    )
    with pytest.raises(MetadataError) as info:
        read_metadata(path)
    assert str(info.value) == (
        "m.tsv: column 'age' is declared numeric in #q2:types but 1 values are not numbers "
        "(e.g. 'missing' in samples 'S2')"
    )


def test_unknown_missing_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MetadataError) as info:
        read_metadata(_write(tmp_path, "id\tage\n#q2:missing\tNA-missing\nS1\t3\n"))
    assert str(info.value) == (
        "m.tsv: #q2:missing declares 'NA-missing' for column 'age'; expected one of "
        "'INSDC:missing', 'no-missing', 'blank'"
    )


def test_q2_missing_row_after_data_is_a_comment(tmp_path: Path) -> None:
    meta = read_metadata(_write(tmp_path, "id\tsite\nS1\tNA\n#q2:missing\tno-missing\nS2\tgut\n"))
    assert meta.frame["site"].tolist() == [None, "gut"]
