//! Following a job's event stream from the CLI (`job watch`, `job submit --watch`).
//!
//! On a terminal, a progress bar; otherwise (a batch script, a CI log) one line on stderr per
//! change of state or stage and per 10% of progress, so the log shows the job's course. A stream
//! that drops before the job ends (the node restarted, the network blinked) is reopened with
//! `Last-Event-ID`, so no event is shown twice and none is missed.

use std::io::IsTerminal as _;
use std::time::Duration;

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::store::jobs::JobState;

/// Reconnections in a row, without an event between them, before giving up (about five minutes
/// with the back-off below).
const MAX_RECONNECTS: u32 = 32;

/// What the researcher sees of the events.
struct View {
    bar: Option<ProgressBar>,
    shown: Option<(String, Option<String>, i64)>,
    /// The last line printed, so a step the node reports twice (its own record and the host's
    /// relayed one) is shown once.
    last_line: String,
    /// The highest progress seen in the current state: chunks finishing out of order can make
    /// the node's figure dip, which reads as going backwards.
    high: (String, f64),
}

impl View {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let pb = ProgressBar::new(1000);
            pb.set_style(
                ProgressStyle::with_template("{msg:40} [{bar:30}] {percent}% {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            pb
        });
        Self { bar, shown: None, last_line: String::new(), high: (String::new(), 0.0) }
    }

    fn note(&self, line: &str) {
        match &self.bar {
            Some(pb) => pb.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// An event's state, stage, progress (never below what this state showed before) and message.
    fn observe(&mut self, event: &Value) -> (String, Option<String>, f64, Option<String>) {
        let state = event["state"].as_str().unwrap_or("").to_string();
        let stage = event["stage"].as_str().map(String::from);
        let mut progress = event["progress"].as_f64().unwrap_or(0.0).clamp(0.0, 1.0);
        if self.high.0 == state {
            progress = progress.max(self.high.1);
        }
        self.high = (state.clone(), progress);
        (state, stage, progress, event["message"].as_str().map(String::from))
    }

    fn event(&mut self, event: &Value) {
        let (state, stage, progress, message) = self.observe(event);
        let message = message.as_deref();
        if let Some(pb) = &self.bar {
            let stage_text = stage.as_deref().map(|s| format!(" / {s}")).unwrap_or_default();
            pb.set_message(format!("{state}{stage_text}"));
            pb.set_position((progress * 1000.0) as u64);
            if let Some(m) = message {
                pb.println(format!("  {m}"));
            }
            return;
        }
        if let Some(line) = self.line(state, stage, progress, message) {
            eprintln!("{line}");
        }
    }

    /// The log line for an event when not on a terminal: on a change of state or stage, per
    /// 10% of progress, and for each message, never the same line twice in a row.
    fn line(&mut self, state: String, stage: Option<String>, progress: f64, message: Option<&str>) -> Option<String> {
        let decile = (progress * 10.0).floor() as i64;
        let changed = self.shown.as_ref().is_none_or(|(s, st, d)| *s != state || *st != stage || *d != decile);
        if !changed && message.is_none() {
            return None;
        }
        let stage_text = stage.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
        let message_text = message.map(|m| format!(": {m}")).unwrap_or_default();
        let line = format!("{state}{stage_text} {:.0}%{message_text}", progress * 100.0);
        self.shown = Some((state, stage, decile));
        if line == self.last_line {
            return None;
        }
        self.last_line = line.clone();
        Some(line)
    }

    fn finish(&self) {
        if let Some(pb) = &self.bar {
            pb.finish();
        }
    }
}

/// Server-sent events as they arrive: `(id, data)` of each event block.
#[derive(Default)]
struct SseParser {
    buffer: String,
    id: Option<String>,
    data: String,
}

impl SseParser {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<(Option<String>, String)>) {
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push((self.id.clone(), std::mem::take(&mut self.data)));
                }
            } else if let Some(id) = line.strip_prefix("id:") {
                self.id = Some(id.trim().to_string());
            } else if let Some(data) = line.strip_prefix("data:") {
                self.data.push_str(data.trim_start());
            }
        }
    }
}

/// Follows job `id` at `url` (its events endpoint) until it ends; returns its final state.
/// A refusal (4xx) ends it at once; a lost stream is reopened.
pub(super) async fn follow(http: &reqwest::Client, url: &str, token: &str, id: &str) -> anyhow::Result<String> {
    let mut view = View::new();
    let (mut last_id, mut state, mut failures) = (None::<String>, String::from("unknown"), 0u32);
    loop {
        let mut request = http.get(url).bearer_auth(token);
        if let Some(last) = &last_id {
            request = request.header("Last-Event-ID", last);
        }
        let lost = match request.send().await {
            Ok(resp) if resp.status().is_client_error() => {
                return Err(super::client::success_or_error(resp)
                    .await
                    .err()
                    .unwrap_or_else(|| anyhow::anyhow!("refused")));
            }
            Ok(resp) if !resp.status().is_success() => format!("the node answered {}", resp.status()),
            Ok(resp) => {
                let mut stream = resp.bytes_stream();
                let (mut parser, mut events) = (SseParser::default(), Vec::new());
                let mut reason = String::from("the stream ended before the job did");
                while let Some(chunk) = stream.next().await {
                    let chunk = match chunk {
                        Ok(c) => c,
                        Err(e) => {
                            reason = format!("the stream broke: {e}");
                            break;
                        }
                    };
                    parser.push(&chunk, &mut events);
                    for (event_id, data) in events.drain(..) {
                        let Ok(event) = serde_json::from_str::<Value>(&data) else { continue };
                        failures = 0;
                        last_id = event_id.or(last_id);
                        state = event["state"].as_str().unwrap_or("").to_string();
                        view.event(&event);
                    }
                }
                reason
            }
            Err(e) => format!("cannot reach the node: {e}"),
        };
        if state.parse::<JobState>().is_ok_and(|s| s.is_final()) {
            view.finish();
            return Ok(state);
        }
        failures += 1;
        if failures > MAX_RECONNECTS {
            view.finish();
            anyhow::bail!("lost the events of job {id} ({lost}); it may still be running: `fedimpute job status {id}`");
        }
        let wait = Duration::from_secs(u64::from(failures.min(10)));
        view.note(&format!("{lost}; reconnecting in {} s", wait.as_secs()));
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn log_lines_never_repeat_and_progress_never_goes_back_within_a_state() {
        let mut view = View { bar: None, shown: None, last_line: String::new(), high: (String::new(), 0.0) };
        let mut lines = Vec::new();
        for (state, stage, progress, message) in [
            ("running", "qc", 0.02, Some("started")),
            ("running", "qc", 0.02, Some("started")),
            ("running", "phasing", 0.41, None),
            ("running", "phasing", 0.36, None),
            ("running", "phasing", 0.45, None),
            ("running", "phasing", 0.52, None),
            ("completed", "", 1.0, None),
        ] {
            let event = json!({ "state": state, "stage": (!stage.is_empty()).then_some(stage), "progress": progress,
                                "message": message });
            let (state, stage, progress, message) = view.observe(&event);
            lines.extend(view.line(state, stage, progress, message.as_deref()));
        }
        assert_eq!(
            lines,
            ["running (qc) 2%: started", "running (phasing) 41%", "running (phasing) 52%", "completed 100%"]
        );
    }

    #[test]
    fn events_are_read_across_chunk_boundaries_with_their_ids() {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        parser.push(b"event: job\nid: 7\ndata: {\"state\":", &mut out);
        assert!(out.is_empty(), "no event before its blank line");
        parser.push(b"\"queued\"}\n\n: keep-alive\n\nevent: job\r\ndata: {}\r\nid: 8\r\n\r\n", &mut out);
        assert_eq!(
            out,
            [(Some("7".to_string()), "{\"state\":\"queued\"}".to_string()), (Some("8".into()), "{}".into())]
        );
    }
}
