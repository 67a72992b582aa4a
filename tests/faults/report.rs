//! One markdown table per scenario, printed to stderr and appended to
//! `target/faults-report.md` (the first scenario of a run starts the file afresh), then the
//! scenario's verdict: it fails listing every problem it saw.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Once;

use super::http::Counts;

/// A scenario's measurements and problems.
#[derive(Debug)]
pub struct Report {
    title: String,
    rows: Vec<(String, String)>,
    problems: Vec<String>,
}

impl Report {
    /// An empty report for the scenario `title`.
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            rows: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Adds a measurement.
    pub fn row(&mut self, name: &str, value: impl std::fmt::Display) {
        self.rows.push((name.to_owned(), value.to_string()));
    }

    /// Records a problem: the scenario fails.
    pub fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// Adds a measured time, or a problem if there is none.
    pub fn measured(&mut self, name: &str, measured: Result<std::time::Duration, String>) {
        match measured {
            Ok(took) => self.row(name, format!("{} ms", took.as_millis())),
            Err(problem) => {
                self.row(name, "never");
                self.problem(format!("{name}: {problem}"));
            }
        }
    }

    /// Records a problem unless `ok`.
    pub fn require(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.problem(problem());
        }
    }

    /// Adds the request counts and a problem for each count that must be zero.
    pub fn counts(&mut self, counts: &Counts) {
        let statuses: Vec<String> = counts
            .statuses
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect();
        self.row("requests", counts.requests());
        self.row("statuses", statuses.join(", "));
        self.row(
            "cache hits / misses (market reads)",
            format!("{} / {}", counts.hits, counts.misses),
        );
        let must_be_zero = [
            ("5xx other than 503", counts.server_errors),
            (
                "503 without Retry-After or envelope",
                counts.bad_unavailable,
            ),
            ("unanswered", counts.unanswered),
            ("stale reads", counts.stale),
            ("404 of a live market", counts.wrong),
        ];
        for (name, count) in must_be_zero {
            self.row(name, count);
            if count > 0 {
                let examples = counts.examples.get(name).cloned().unwrap_or_default();
                self.problem(format!("{count} {name}, e.g. {examples:#?}"));
            }
        }
    }

    /// Prints and saves the table, then fails if there was any problem.
    pub fn finish(self) {
        let mut table = format!("\n### {}\n\n| measure | value |\n|---|---|\n", self.title);
        for (name, value) in &self.rows {
            let _ = writeln!(table, "| {name} | {} |", value.replace('|', "\\|"));
        }
        let verdict = if self.problems.is_empty() {
            "pass"
        } else {
            "FAIL"
        };
        let _ = writeln!(table, "| verdict | {verdict} |");
        eprintln!("{table}");
        save(&table);
        assert!(
            self.problems.is_empty(),
            "{}: {} problem(s):\n- {}",
            self.title,
            self.problems.len(),
            self.problems.join("\n- ")
        );
    }
}

/// `target/faults-report.md`, found from the test's own scratch folder (`target/tmp`).
fn report_path() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .map_or(tmp.clone(), PathBuf::from)
        .join("faults-report.md")
}

fn save(table: &str) {
    static FRESH: Once = Once::new();
    let path = report_path();
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).unwrap();
    }
    FRESH.call_once(|| {
        let _ = std::fs::write(&path, "# Fault tests\n");
    });
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .unwrap();
    file.write_all(table.as_bytes()).unwrap();
}
