//! The GLUE tasks in their official TSV layout (as `download_glue_data.py` writes them).
//!
//! Files are split on tabs only, with no quote handling (some fields begin with `"`); MRPC
//! starts with a UTF-8 BOM; CoLA has no header. Columns are found by header name, so a file
//! with extra columns still loads; a malformed row is an error naming file and line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

/// STS-B's similarity scale: every gold score lies in it (0: unrelated, 5: equivalent).
pub const STSB_SCORES: (f32, f32) = (0.0, 5.0);

/// One GLUE task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GlueTask {
    /// Corpus of Linguistic Acceptability (Matthews correlation).
    Cola,
    /// Stanford Sentiment Treebank, binary (accuracy).
    Sst2,
    /// Microsoft Research Paraphrase Corpus (F1, accuracy).
    Mrpc,
    /// Semantic Textual Similarity Benchmark, regression to [0, 5] (Pearson, Spearman).
    Stsb,
    /// Quora Question Pairs (F1, accuracy).
    Qqp,
    /// Multi-Genre NLI, 3 classes (accuracy on dev_matched).
    Mnli,
    /// Question NLI (accuracy).
    Qnli,
    /// Recognizing Textual Entailment (accuracy).
    Rte,
    /// Winograd NLI (accuracy).
    Wnli,
}

/// What a task's label is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LabelKind {
    /// One of these class names; the index is the class id.
    Classes(&'static [&'static str]),
    /// A real score.
    Regression,
}

/// A dev-set metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Fraction of correct predictions.
    Accuracy,
    /// F1 of class 1.
    F1,
    /// Matthews correlation coefficient.
    Mcc,
    /// Pearson correlation.
    Pearson,
    /// Spearman rank correlation.
    Spearman,
}

/// A labelled example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// First (or only) sentence.
    pub text: String,
    /// Second sentence, for pair tasks.
    pub text_pair: Option<String>,
    /// Class id, or the regression target.
    pub label: Label,
}

/// A label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Label {
    /// Class id.
    Class(usize),
    /// Regression target.
    Score(f32),
}

/// Errors of reading GLUE files.
#[derive(Debug, thiserror::Error)]
pub enum GlueError {
    /// The data directory or a task file is missing or unreadable.
    #[error(
        "cannot read {path}: {source} (expected the GLUE layout: <data-dir>/<TASK>/train.tsv, dev.tsv)"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A header lacks a column the task needs.
    #[error("{path}: header has no column {column:?}")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column name.
        column: &'static str,
    },
    /// A data row is malformed.
    #[error("{path}:{line}: {reason}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An unknown task name.
    #[error(
        "unknown GLUE task {0:?}: expected cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte or wnli"
    )]
    UnknownTask(String),
}

/// Which split to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `train.tsv`.
    Train,
    /// The dev file (`dev.tsv`; MNLI: `dev_matched.tsv`).
    Dev,
}

impl GlueTask {
    /// All tasks.
    pub const ALL: [GlueTask; 9] = [
        Self::Cola,
        Self::Sst2,
        Self::Mrpc,
        Self::Stsb,
        Self::Qqp,
        Self::Mnli,
        Self::Qnli,
        Self::Rte,
        Self::Wnli,
    ];

    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cola => "cola",
            Self::Sst2 => "sst2",
            Self::Mrpc => "mrpc",
            Self::Stsb => "stsb",
            Self::Qqp => "qqp",
            Self::Mnli => "mnli",
            Self::Qnli => "qnli",
            Self::Rte => "rte",
            Self::Wnli => "wnli",
        }
    }

    /// Directory name in the GLUE layout.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Cola => "CoLA",
            Self::Sst2 => "SST-2",
            Self::Mrpc => "MRPC",
            Self::Stsb => "STS-B",
            Self::Qqp => "QQP",
            Self::Mnli => "MNLI",
            Self::Qnli => "QNLI",
            Self::Rte => "RTE",
            Self::Wnli => "WNLI",
        }
    }

    /// The label space.
    pub fn labels(self) -> LabelKind {
        match self {
            Self::Stsb => LabelKind::Regression,
            Self::Mnli => LabelKind::Classes(&["contradiction", "entailment", "neutral"]),
            Self::Qnli | Self::Rte => LabelKind::Classes(&["entailment", "not_entailment"]),
            _ => LabelKind::Classes(&["0", "1"]),
        }
    }

    /// Dev metrics, the task's main metric first.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Self::Cola => &[Metric::Mcc],
            Self::Mrpc | Self::Qqp => &[Metric::F1, Metric::Accuracy],
            Self::Stsb => &[Metric::Pearson, Metric::Spearman],
            _ => &[Metric::Accuracy],
        }
    }

    /// File of `split` under `data_dir`.
    pub fn path(self, data_dir: &Path, split: Split) -> PathBuf {
        let file = match (self, split) {
            (_, Split::Train) => "train.tsv",
            (Self::Mnli, Split::Dev) => "dev_matched.tsv",
            (_, Split::Dev) => "dev.tsv",
        };
        data_dir.join(self.dir_name()).join(file)
    }

    /// `(first text, second text, label)` columns, by header name; `None` for CoLA, which
    /// has no header (columns: source, label, original judgement, sentence).
    fn columns(self) -> Option<(&'static str, Option<&'static str>, &'static str)> {
        Some(match self {
            Self::Cola => return None,
            Self::Sst2 => ("sentence", None, "label"),
            Self::Mrpc => ("#1 String", Some("#2 String"), "Quality"),
            Self::Stsb => ("sentence1", Some("sentence2"), "score"),
            Self::Qqp => ("question1", Some("question2"), "is_duplicate"),
            Self::Mnli => ("sentence1", Some("sentence2"), "gold_label"),
            Self::Qnli => ("question", Some("sentence"), "label"),
            Self::Rte | Self::Wnli => ("sentence1", Some("sentence2"), "label"),
        })
    }

    /// Reads `split` from `data_dir`.
    pub fn load(self, data_dir: &Path, split: Split) -> Result<Vec<Example>, GlueError> {
        let path = self.path(data_dir, split);
        let bytes = std::fs::read(&path).map_err(|source| GlueError::Io {
            path: path.clone(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            GlueError::Row {
                path: path.clone(),
                line: 1 + bytes[..valid].iter().filter(|&&b| b == b'\n').count(),
                reason: format!(
                    "not UTF-8: invalid byte {:#04x} at column {}",
                    bytes[valid],
                    1 + valid
                        - bytes[..valid]
                            .iter()
                            .rposition(|&b| b == b'\n')
                            .map_or(0, |p| p + 1)
                ),
            }
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        // Windows line ends (CRLF) are line ends too.
        let mut lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .filter(|(_, l)| !l.is_empty());
        let row_err = |line: usize, reason: String| GlueError::Row {
            path: path.clone(),
            line: line + 1,
            reason,
        };
        let (first, second, label) = match self.columns() {
            None => (3, None, 1),
            Some((first, second, label)) => {
                let (_, header) = lines
                    .next()
                    .ok_or_else(|| row_err(0, "empty file".into()))?;
                let names: Vec<&str> = header.split('\t').collect();
                let find = |column: &'static str| {
                    names.iter().position(|n| *n == column).ok_or_else(|| {
                        GlueError::MissingColumn {
                            path: path.clone(),
                            column,
                        }
                    })
                };
                (find(first)?, second.map(find).transpose()?, find(label)?)
            }
        };
        let needed = first.max(second.unwrap_or(0)).max(label) + 1;
        lines
            .map(|(i, line)| {
                let fields: Vec<&str> = line.split('\t').collect();
                if fields.len() < needed {
                    return Err(row_err(
                        i,
                        format!(
                            "expected at least {needed} tab-separated fields, found {}",
                            fields.len()
                        ),
                    ));
                }
                let raw = fields[label].trim();
                let label = match self.labels() {
                    LabelKind::Regression => {
                        let score = raw.parse::<f32>().ok().filter(|v| v.is_finite());
                        let score = score
                            .ok_or_else(|| row_err(i, format!("label {raw:?} is not a number")))?;
                        if !(STSB_SCORES.0..=STSB_SCORES.1).contains(&score) {
                            return Err(row_err(
                                i,
                                format!(
                                    "label {raw:?} is outside the similarity scale {} to {}",
                                    STSB_SCORES.0, STSB_SCORES.1
                                ),
                            ));
                        }
                        Label::Score(score)
                    }
                    LabelKind::Classes(names) => names
                        .iter()
                        .position(|n| *n == raw)
                        .map(Label::Class)
                        .ok_or_else(|| {
                            row_err(i, format!("label {raw:?} is not one of {names:?}"))
                        })?,
                };
                Ok(Example {
                    text: fields[first].to_string(),
                    text_pair: second.map(|c| fields[c].to_string()),
                    label,
                })
            })
            .collect()
    }
}

impl fmt::Display for GlueTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GlueTask {
    type Err = GlueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.to_ascii_lowercase().replace('-', "");
        Self::ALL
            .into_iter()
            .find(|t| t.name() == wanted)
            .ok_or_else(|| GlueError::UnknownTask(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, task: GlueTask, file: &str, content: &str) {
        let d = dir.join(task.dir_name());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(file), content).unwrap();
    }

    #[test]
    fn reads_bom_headers_and_quotes_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            GlueTask::Mrpc,
            "dev.tsv",
            "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\t\"Quoted\tHe said.\n",
        );
        // The quote opens no field: the tab inside still splits, so this row has 6 fields and
        // the strings are `"Quoted` and `He said.`.
        let rows = GlueTask::Mrpc.load(dir.path(), Split::Dev).unwrap();
        assert_eq!(rows[0].text, "\"Quoted");
        assert_eq!(rows[0].text_pair.as_deref(), Some("He said."));
        assert_eq!(rows[0].label, Label::Class(1));
    }

    #[test]
    fn windows_line_ends_read_as_unix_ones() {
        let dir = tempfile::tempdir().unwrap();
        let unix = "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n";
        write(dir.path(), GlueTask::Rte, "train.tsv", unix);
        let expected = GlueTask::Rte.load(dir.path(), Split::Train).unwrap();
        write(
            dir.path(),
            GlueTask::Rte,
            "train.tsv",
            &unix.replace('\n', "\r\n"),
        );
        let crlf = GlueTask::Rte.load(dir.path(), Split::Train).unwrap();
        assert_eq!(crlf, expected);
        assert_eq!(crlf[0].text_pair.as_deref(), Some("b"));
    }

    #[test]
    fn cola_has_no_header_and_no_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            GlueTask::Cola,
            "dev.tsv",
            "gj04\t1\t\tGood.\ngj04\t0\t*\tBad bad.",
        );
        let rows = GlueTask::Cola.load(dir.path(), Split::Dev).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[1].text.as_str(), rows[1].label),
            ("Bad bad.", Label::Class(0))
        );
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            GlueTask::Rte,
            "train.tsv",
            "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n",
        );
        let err = GlueTask::Rte
            .load(dir.path(), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RTE/train.tsv:3") && err.contains("fields"),
            "{err}"
        );
        write(
            dir.path(),
            GlueTask::Rte,
            "train.tsv",
            "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n",
        );
        let err = GlueTask::Rte
            .load(dir.path(), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RTE/train.tsv:2") && err.contains("maybe"),
            "{err}"
        );
        write(
            dir.path(),
            GlueTask::Stsb,
            "dev.tsv",
            "sentence1\tsentence2\tscore\na\tb\tNaN\n",
        );
        let err = GlueTask::Stsb
            .load(dir.path(), Split::Dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("STS-B/dev.tsv:2"), "{err}");
        // A score off STS-B's 0–5 scale (1e30 would overflow the squared error).
        write(
            dir.path(),
            GlueTask::Stsb,
            "dev.tsv",
            "sentence1\tsentence2\tscore\na\tb\t4.5\nc\td\t1e30\n",
        );
        let err = GlueTask::Stsb
            .load(dir.path(), Split::Dev)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("STS-B/dev.tsv:3") && err.contains("outside"),
            "{err}"
        );
        // Invalid UTF-8 is named with its line.
        let d = dir.path().join("RTE");
        std::fs::write(
            d.join("dev.tsv"),
            b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\xff\td\tentailment\n",
        )
        .unwrap();
        let err = GlueTask::Rte
            .load(dir.path(), Split::Dev)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RTE/dev.tsv:3") && err.contains("not UTF-8") && err.contains("0xff"),
            "{err}"
        );
        write(dir.path(), GlueTask::Sst2, "dev.tsv", "text\tlabel\n");
        let err = GlueTask::Sst2
            .load(dir.path(), Split::Dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no column \"sentence\""), "{err}");
    }

    #[test]
    fn missing_files_and_tasks_are_clear_errors() {
        let err = GlueTask::Rte
            .load(Path::new("/nonexistent"), Split::Dev)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/RTE/dev.tsv") && err.contains("GLUE layout"),
            "{err}"
        );
        assert!("sts-b".parse::<GlueTask>().is_ok());
        assert!("SST2".parse::<GlueTask>().is_ok());
        assert!(
            "squad"
                .parse::<GlueTask>()
                .unwrap_err()
                .to_string()
                .contains("unknown GLUE task")
        );
    }

    /// The real GLUE files, when the shared copy exists (never committed).
    #[test]
    fn real_glue_files_load_with_their_documented_counts() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/glue");
        if !dir.is_dir() {
            println!("skipped: no GLUE data at {}", dir.display());
            return;
        }
        let expected = [
            (GlueTask::Cola, Split::Train, 8551),
            (GlueTask::Cola, Split::Dev, 1043),
            (GlueTask::Sst2, Split::Train, 67349),
            (GlueTask::Sst2, Split::Dev, 872),
            (GlueTask::Mrpc, Split::Train, 3668),
            (GlueTask::Mrpc, Split::Dev, 408),
            (GlueTask::Rte, Split::Train, 2490),
            (GlueTask::Rte, Split::Dev, 277),
            (GlueTask::Stsb, Split::Train, 5749),
            (GlueTask::Stsb, Split::Dev, 1500),
            (GlueTask::Qnli, Split::Dev, 5463),
            (GlueTask::Wnli, Split::Train, 635),
            (GlueTask::Wnli, Split::Dev, 71),
        ];
        for (task, split, n) in expected {
            let rows = task.load(&dir, split).unwrap();
            assert_eq!(rows.len(), n, "{task} {split:?}");
        }
        let mrpc = GlueTask::Mrpc.load(&dir, Split::Dev).unwrap();
        let positives = mrpc.iter().filter(|e| e.label == Label::Class(1)).count();
        assert_eq!(positives, 279);
        let sst = GlueTask::Sst2.load(&dir, Split::Dev).unwrap();
        assert_eq!(
            sst[0].text,
            "it 's a charming and often affecting journey . "
        );
    }
}
