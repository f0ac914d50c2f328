//! Progress of a byte transfer (upload, download): a bar on a terminal; otherwise one line on
//! stderr per 10%, so a script's log shows the transfer going on (indicatif draws nothing there).

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressStyle};

pub(super) struct ByteProgress {
    bar: Option<ProgressBar>,
    what: String,
    len: u64,
    position: u64,
    shown_decile: Option<u64>,
}

impl ByteProgress {
    pub(super) fn new(len: u64, what: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let pb = ProgressBar::new(len);
            pb.set_style(
                ProgressStyle::with_template("{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            pb.set_message(what.to_string());
            pb
        });
        Self { bar, what: what.to_string(), len, position: 0, shown_decile: None }
    }

    pub(super) fn set_position(&mut self, position: u64) {
        self.position = position;
        match &self.bar {
            Some(pb) => pb.set_position(position),
            None => self.line(),
        }
    }

    pub(super) fn inc(&mut self, bytes: u64) {
        self.set_position(self.position.saturating_add(bytes));
    }

    pub(super) fn position(&self) -> u64 {
        self.position
    }

    pub(super) fn finish(&mut self) {
        match &self.bar {
            Some(pb) => pb.finish(),
            None => {
                self.position = self.position.max(self.len);
                self.line();
            }
        }
    }

    fn line(&mut self) {
        let decile = (self.position.saturating_mul(10)).checked_div(self.len).unwrap_or(10).min(10);
        if self.shown_decile.is_none_or(|d| decile > d) {
            eprintln!("{}: {}% of {} bytes", self.what, decile * 10, self.len);
            self.shown_decile = Some(decile);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_per_ten_percent_and_none_twice() {
        let mut p = ByteProgress { bar: None, what: "x".into(), len: 100, position: 0, shown_decile: None };
        p.set_position(0);
        assert_eq!(p.shown_decile, Some(0));
        p.inc(5);
        assert_eq!(p.shown_decile, Some(0), "5% shows nothing new");
        p.inc(30);
        assert_eq!(p.shown_decile, Some(3));
        p.finish();
        assert_eq!((p.shown_decile, p.position()), (Some(10), 100));
        let mut empty = ByteProgress { bar: None, what: "e".into(), len: 0, position: 0, shown_decile: None };
        empty.finish();
        assert_eq!(empty.shown_decile, Some(10), "an empty file is done at once");
    }
}
