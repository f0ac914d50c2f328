//! E-mail when a researcher's job ends: `[smtp]` in node.toml, the mail itself (the job's name,
//! state, reason and a link to its page; never genotypes or result files), and the sender that
//! works through the outbox in the background, so a slow or absent SMTP server never holds up
//! or fails a job.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::store::Store;
use crate::store::jobs::{JobRow, JobState};

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only to a relay on this machine (127.0.0.1, ::1, localhost).
    None,
}

/// `[smtp]`: where mails about ended jobs go out. Without it, no mails.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    pub host: String,
    /// Default: 587 for starttls, 465 for tls, 25 for none.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    /// Login at the server, if it asks for one (with `password_file`).
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the SMTP password (mode 0600), relative to the data directory unless absolute.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The sender, e.g. `Imputation at Wits <imputation@wits.ac.za>`.
    pub from: String,
    /// The node's address as researchers reach it, for the link to the job page in each mail,
    /// e.g. `https://imputation.wits.ac.za:8443`.
    pub public_url: String,
    /// Seconds one attempt may take.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Attempts per mail before it is given up (and logged as such).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Seconds before the first retry; each further one waits twice as long, at most an hour.
    #[serde(default = "default_retry_secs")]
    pub retry_secs: u64,
}

fn default_timeout_secs() -> u64 {
    20
}
fn default_max_attempts() -> u32 {
    8
}
fn default_retry_secs() -> u64 {
    30
}

impl SmtpSection {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        })
    }

    /// What node.toml must get right; the config loader reports it with the file's name.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("key `smtp.host` must not be empty".into());
        }
        self.from.parse::<Mailbox>().map_err(|e| format!("key `smtp.from`: {:?} is not an address: {e}", self.from))?;
        if !self.public_url.starts_with("https://") {
            return Err(format!("key `smtp.public_url` must start with https://, got {:?}", self.public_url));
        }
        let loopback = matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "::1")
            || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if self.security == SmtpSecurity::None && !loopback {
            return Err(format!(
                "key `smtp.security = \"none\"` sends mail unencrypted: only to a relay on this machine, not {:?}; \
                 use starttls or tls",
                self.host
            ));
        }
        if self.username.is_some() != self.password_file.is_some() {
            return Err("keys `smtp.username` and `smtp.password_file` go together".into());
        }
        if self.max_attempts == 0 || self.timeout_secs == 0 || self.retry_secs == 0 {
            return Err("keys `smtp.max_attempts`, `smtp.timeout_secs` and `smtp.retry_secs` must be at least 1".into());
        }
        Ok(())
    }

    /// Seconds to wait after `attempts` failed attempts.
    fn backoff_secs(&self, attempts: u32) -> u64 {
        self.retry_secs.saturating_mul(1 << attempts.saturating_sub(1).min(16)).min(3600)
    }
}

/// Why a mail could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("{0}")]
    Config(String),
    #[error("the SMTP server: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("composing the mail: {0}")]
    Compose(String),
}

/// A connection recipe for the configured SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    config: SmtpSection,
}

impl Mailer {
    /// The mailer `[smtp]` describes; the password file is read now.
    pub fn new(config: &SmtpSection, data_dir: &Path) -> Result<Self, MailError> {
        use lettre::transport::smtp::client::{Tls, TlsParameters};
        let from = config.from.parse().map_err(|e| MailError::Config(format!("smtp.from: {e}")))?;
        let mut builder = match config.security {
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)?,
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)?,
            SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host).tls(Tls::None),
        };
        if config.security == SmtpSecurity::Starttls {
            builder = builder.tls(Tls::Required(TlsParameters::new(config.host.clone())?));
        }
        builder = builder.port(config.port()).timeout(Some(Duration::from_secs(config.timeout_secs)));
        if let (Some(user), Some(file)) = (&config.username, &config.password_file) {
            let path = if file.is_absolute() { file.clone() } else { data_dir.join(file) };
            let password = std::fs::read_to_string(&path)
                .map_err(|e| MailError::Config(format!("reading smtp.password_file {}: {e}", path.display())))?;
            builder = builder.credentials(Credentials::new(user.clone(), password.trim_end().to_string()));
        }
        Ok(Self { transport: builder.build(), from, config: config.clone() })
    }

    /// Sends one plain-text mail now.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|e| MailError::Compose(format!("recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| MailError::Compose(e.to_string()))?;
        self.transport.send(message).await?;
        Ok(())
    }
}

/// Whether `text` is an address mails can go to.
pub fn valid_address(text: &str) -> bool {
    text.len() <= 254 && text.parse::<lettre::Address>().is_ok()
}

/// The subject and body of the mail telling a job's owner it ended.
pub fn job_ended_mail(job: &JobRow, state: JobState, public_url: &str, institution: &str) -> (String, String) {
    let state_text = match state {
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Cancelled => "was cancelled",
        _ => "ended",
    };
    let subject = format!("fedimpute: job \"{}\" {state_text}", job.name);
    let mut body = format!("Your imputation job \"{}\" ({}) at {institution} {state_text}.\n", job.name, job.id);
    if state != JobState::Completed
        && let Some(reason) = job.error.as_deref().filter(|e| !e.is_empty())
    {
        body.push_str(&format!("Reason: {reason}\n"));
    }
    body.push_str(&format!(
        "\nSee the job, its QC report and quality figures{}:\n{}/#/jobs/{}\n",
        if state == JobState::Completed { ", and download its results" } else { "" },
        public_url.trim_end_matches('/'),
        job.id
    ));
    body.push_str(
        "\nThis mail holds no genotypes and no results: they stay on the node until you download them.\n\
         You get it because e-mail notifications are on for your account; turn them off on your account \
         page, or with PATCH /api/v1/me {\"email_notifications\": false}.\n",
    );
    (subject, body)
}

/// Sends the outbox's mails as they come due, until the process ends.
pub fn spawn_sender(store: Store, mailer: Mailer, wake: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            match store.due_mails(20).await {
                Ok(mails) => {
                    for mail in mails {
                        send_one(&store, &mailer, mail).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "reading the mail outbox"),
            }
            let wait = match store.next_mail_due().await {
                Ok(Some(due)) => Duration::from_millis((due - crate::time::now_ms()).clamp(0, 60_000) as u64),
                _ => Duration::from_secs(60),
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    });
}

async fn send_one(store: &Store, mailer: &Mailer, mail: crate::store::mail::OutboxMail) {
    let attempts = u32::try_from(mail.attempts).unwrap_or(u32::MAX).saturating_add(1);
    let outcome = match mailer.send(&mail.recipient, &mail.subject, &mail.body).await {
        Ok(()) => {
            tracing::info!(job_id = %mail.job_id, mail = mail.id, "job mail sent");
            store.mark_mail_sent(mail.id).await
        }
        Err(e) if attempts < mailer.config.max_attempts => {
            let wait = mailer.config.backoff_secs(attempts);
            tracing::warn!(job_id = %mail.job_id, mail = mail.id, attempts, retry_in_secs = wait, error = %e,
                "could not send a job mail; will retry");
            let retry_at = crate::time::now_ms() + i64::try_from(wait * 1000).unwrap_or(i64::MAX);
            store.mark_mail_failed(mail.id, &e.to_string(), Some(retry_at)).await
        }
        Err(e) => {
            tracing::error!(job_id = %mail.job_id, mail = mail.id, attempts, error = %e,
                "could not send a job mail; giving up");
            store.mark_mail_failed(mail.id, &e.to_string(), None).await
        }
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "recording a mail attempt in the outbox");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(host: &str, security: SmtpSecurity) -> SmtpSection {
        SmtpSection {
            host: host.into(),
            port: None,
            security,
            username: None,
            password_file: None,
            from: "Imputation <imputation@example.org>".into(),
            public_url: "https://imputation.example.org:8443".into(),
            timeout_secs: 20,
            max_attempts: 8,
            retry_secs: 30,
        }
    }

    #[test]
    fn unencrypted_smtp_is_only_for_a_relay_on_this_machine() {
        assert!(section("127.0.0.1", SmtpSecurity::None).validate().is_ok());
        assert!(section("localhost", SmtpSecurity::None).validate().is_ok());
        let err = section("smtp.example.org", SmtpSecurity::None).validate().unwrap_err();
        assert!(err.contains("unencrypted"), "{err}");
        assert!(section("smtp.example.org", SmtpSecurity::Starttls).validate().is_ok());
        let mut bad = section("smtp.example.org", SmtpSecurity::Tls);
        bad.from = "not an address".into();
        assert!(bad.validate().is_err());
        assert_eq!(section("h", SmtpSecurity::Tls).port(), 465);
    }

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_an_hour() {
        let s = section("h", SmtpSecurity::Tls);
        assert_eq!([1, 2, 3, 4].map(|a| s.backoff_secs(a)), [30, 60, 120, 240]);
        assert_eq!(s.backoff_secs(40), 3600);
    }

    #[test]
    fn addresses_are_checked() {
        assert!(valid_address("ada@example.org"));
        assert!(!valid_address("ada"));
        assert!(!valid_address("ada@example.org\r\nBcc: eve@example.org"));
    }
}
