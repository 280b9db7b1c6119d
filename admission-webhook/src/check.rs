//! `admission-webhook check`: the webhook's rules run offline over files, for CI jobs and
//! for people about to `kubectl apply`.

use std::io::Write;
use std::path::{Path, PathBuf};

use catalog::{LoadError, Loaded};
use policy::{check_objects, Enforcer, Finding, ObjectKey, Options, OptionsError, Severity};
use serde::Serialize;

/// Settings of one check, already parsed from the command line.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub paths: Vec<PathBuf>,
    pub existing: Vec<PathBuf>,
    pub options: Options,
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Input that could not be checked at all: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error("writing the report: {0}")]
    Write(#[from] std::io::Error),
}

/// One finding with where it was found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Located {
    pub file: PathBuf,
    pub document: usize,
    pub namespace: String,
    pub name: String,
    #[serde(flatten)]
    pub finding: Finding,
    /// Who refuses the object for this finding in a cluster: `api-server`, `istio` or
    /// `globalmesh`.
    pub enforced_by: Enforcer,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checked: usize,
    pub errors: usize,
    pub warnings: usize,
    pub findings: Vec<Located>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.errors > 0
    }
}

/// Loads and checks; errors are only for input that cannot be read or parsed.
pub fn check(config: &CheckConfig) -> Result<Report, CheckError> {
    let existing = catalog::load_paths(&config.existing)?;
    let subjects = catalog::load_paths(&config.paths)?;
    let results = check_objects(
        subjects.iter().map(|l| &l.entry),
        existing.iter().map(|l| &l.entry),
        &config.options,
    );
    // In file order, then document order, as the files were read.
    let findings: Vec<Located> = subjects
        .iter()
        .zip(results)
        .flat_map(|(loaded, checked)| {
            checked
                .findings
                .into_iter()
                .map(move |f| located(loaded, &checked.key, f))
        })
        .collect();
    let errors = findings
        .iter()
        .filter(|f| f.finding.severity == Severity::Error)
        .count();
    Ok(Report {
        checked: subjects.len(),
        errors,
        warnings: findings.len() - errors,
        findings,
    })
}

fn located(loaded: &Loaded, key: &ObjectKey, finding: Finding) -> Located {
    Located {
        file: loaded.source.clone(),
        document: loaded.document,
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        enforced_by: finding.enforced_by(),
        finding,
    }
}

/// Writes the report: one line per finding (text), or one JSON document.
pub fn write_report(report: &Report, format: Format, out: &mut impl Write) -> std::io::Result<()> {
    match format {
        Format::Text => {
            for f in &report.findings {
                writeln!(
                    out,
                    "{}: {}/{}: {} [{}]",
                    display(&f.file),
                    f.namespace,
                    f.name,
                    f.finding,
                    f.enforced_by.as_str()
                )?;
            }
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)?;
        }
    }
    out.flush()
}

/// The one-line summary printed on standard error.
pub fn summary(report: &Report) -> String {
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    format!(
        "checked {}: {}, {}",
        plural(report.checked, "ServiceEntry"),
        plural(report.errors, "error"),
        plural(report.warnings, "warning")
    )
    .replace("ServiceEntrys", "ServiceEntries")
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_for(text: &str) -> Report {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("se.yaml");
        std::fs::write(&path, text).unwrap();
        check(&CheckConfig {
            paths: vec![path],
            existing: vec![],
            options: Options::default(),
            format: Format::Text,
        })
        .unwrap()
    }

    #[test]
    fn decode_errors_are_findings_and_other_entries_still_checked() {
        let report = report_for(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a, namespace: foo}\nspec: {hostz: [x]}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: b, namespace: foo}\nspec: {}\n",
        );
        assert_eq!(report.checked, 2);
        assert!(report
            .findings
            .iter()
            .any(|f| f.name == "a" && f.finding.path == "spec.hostz"));
        assert!(report
            .findings
            .iter()
            .any(|f| f.name == "b" && f.finding.path == "spec.hosts"));
    }

    #[test]
    fn summary_counts_in_plain_words() {
        let report = Report {
            checked: 1,
            errors: 0,
            warnings: 2,
            findings: vec![],
        };
        assert_eq!(
            summary(&report),
            "checked 1 ServiceEntry: 0 errors, 2 warnings"
        );
    }
}
