//! The table of the fault scenarios: what each cost while it lasted.

use super::load::Tally;

/// One row per fault, printed when the report is dropped: at the end of the run, or after a
/// scenario failed, with the rows of those before it.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<(String, Tally, String)>,
}

impl Report {
    /// Adds the row of `fault`: the load's counts while it lasted, and the recovery.
    pub fn row(&mut self, fault: &str, tally: &Tally, recovery: String) {
        self.rows.push((fault.to_owned(), tally.clone(), recovery));
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        println!("\n| fault | requests | 5xx | recovery |\n|---|---|---|---|");
        for (fault, tally, recovery) in &self.rows {
            let failures = match tally.classes.get("no answer") {
                Some(unanswered) => format!("{} ({unanswered} no answer)", tally.failures),
                None => tally.failures.to_string(),
            };
            println!("| {fault} | {tally} | {failures} | {recovery} |");
        }
        for (fault, tally, _) in &self.rows {
            for example in &tally.examples {
                println!("{fault}: {example}");
            }
        }
    }
}
