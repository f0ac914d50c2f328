//! E-mail when a job ends, against a real SMTP server (aiosmtpd from PyPI, started by
//! tests/smtp/run.sh on 127.0.0.1): one mail per ended job to its owner, with the job's name,
//! state, reason and link and nothing of its data; none for a user who turned them off; an
//! SMTP server that is down does not hold up the job, and the mail follows once it is back.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fedimpute_tests::jobs::{node_with_panel_and_config, set, submit_targets, wait_state};
use fedimpute_tests::{TestNode, fedimpute, free_port, wait_for, workspace_root};
use reqwest::Method;
use serde_json::{Value, json};

/// The SMTP server, stopped when dropped.
struct SmtpServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl SmtpServer {
    async fn start(port: u16, dir: tempfile::TempDir) -> Self {
        let child = Command::new("bash")
            .arg(workspace_root().join("tests/smtp/run.sh"))
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting the SMTP server");
        let server = Self { port, dir, child: Some(child) };
        // The first start makes the server's venv.
        wait_for("the SMTP server", Duration::from_secs(180), || async move {
            Ok(TcpStream::connect(("127.0.0.1", port)).is_ok())
        })
        .await
        .unwrap();
        server
    }

    fn stop(mut self) -> tempfile::TempDir {
        self.kill();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // run.sh execs python: the TERM reaches the server itself.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// The messages received so far, in order.
    fn mails(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'))
            })
            .collect();
        names.sort();
        names.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect()
    }

    async fn wait_mails(&self, count: usize) -> Vec<Value> {
        wait_for(&format!("{count} mails"), Duration::from_secs(60), || async { Ok(self.mails().len() >= count) })
            .await
            .unwrap();
        self.mails()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn subject(mail: &Value) -> String {
    let content = mail["content"].as_str().unwrap();
    content.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or_default().to_string()
}

async fn researcher(node: &TestNode, name: &str) -> (i64, String) {
    let admin = node.admin_token().await.unwrap();
    let (_, user) =
        node.send(Method::POST, "/users", &admin, &json!({ "username": name, "role": "researcher" })).await.unwrap();
    let token = node.first_login(name, user["generated_password"].as_str().unwrap()).await.unwrap();
    (user["id"].as_i64().unwrap(), token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ends_mails_its_owner_and_a_down_smtp_server_delays_only_the_mail() {
    let smtp = SmtpServer::start(free_port().unwrap(), tempfile::tempdir().unwrap()).await;
    let port = smtp.port;
    // Beagle cannot start (java is /bin/false): imputation jobs fail, QC-only jobs complete.
    let node = node_with_panel_and_config(|c| {
        let c = set(c, "java = \"java\"", "java = \"/bin/false\"");
        format!(
            "{c}\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n\
             from = \"Imputation at Inst A <imputation@inst-a.test>\"\n\
             public_url = \"https://imputation.inst-a.test:8443\"\nretry_secs = 1\n"
        )
    })
    .await;
    let admin = node.admin_token().await.unwrap();
    let (ada_id, ada) = researcher(&node, "ada").await;

    // The admin's test mail goes out at once.
    let out = fedimpute(&["smtp", "test", "--config", &node.config_arg(), "--to", "admin@inst-a.test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mails = smtp.wait_mails(1).await;
    assert_eq!(mails[0]["rcpt_tos"], json!(["admin@inst-a.test"]));
    assert_eq!(subject(&mails[0]), "fedimpute: test mail");

    // Addresses are checked; an admin sets ada's.
    let (status, _) = node
        .send(Method::PATCH, &format!("/users/{ada_id}"), &admin, &json!({ "email": "not an address" }))
        .await
        .unwrap();
    assert_eq!(status, 422);
    let (status, body) = node
        .send(Method::PATCH, &format!("/users/{ada_id}"), &admin, &json!({ "email": "ada@inst-a.test" }))
        .await
        .unwrap();
    assert!(status.is_success(), "{body}");
    assert_eq!(body["email"], "ada@inst-a.test");
    assert_eq!(body["email_notifications"], true);

    let qc_only = |name: &'static str| [("panel", "sim"), ("build", "hg19"), ("mode", "qc_only"), ("name", name)];
    let completed = submit_targets(&node, &ada, &qc_only("a good run")).await;
    wait_state(&node, &ada, &completed, &["completed"], Duration::from_secs(60)).await;
    let mails = smtp.wait_mails(2).await;
    let mail = &mails[1];
    assert_eq!(mail["rcpt_tos"], json!(["ada@inst-a.test"]));
    assert_eq!(subject(mail), "fedimpute: job \"a good run\" completed");
    let content = mail["content"].as_str().unwrap();
    assert!(content.contains(&format!("https://imputation.inst-a.test:8443/#/jobs/{completed}")), "{content}");
    assert!(content.contains("Inst A"), "{content}");
    // Nothing of the data: not even the samples' names (TGT000...).
    assert!(!content.contains("TGT"), "{content}");

    let failing = [("panel", "sim"), ("build", "hg19"), ("engine", "beagle"), ("name", "a broken run")];
    let failed = submit_targets(&node, &ada, &failing).await;
    wait_state(&node, &ada, &failed, &["failed"], Duration::from_secs(120)).await;
    let mails = smtp.wait_mails(3).await;
    assert_eq!(subject(&mails[2]), "fedimpute: job \"a broken run\" failed");
    assert!(mails[2]["content"].as_str().unwrap().contains("Reason: "), "{}", mails[2]["content"]);

    // Ada turns the mails off herself: her next job ends without one.
    let (status, me) = node.send(Method::PATCH, "/me", &ada, &json!({ "email_notifications": false })).await.unwrap();
    assert!(status.is_success() && me["email_notifications"] == false, "{me}");
    let silent = submit_targets(&node, &ada, &qc_only("a quiet run")).await;
    wait_state(&node, &ada, &silent, &["completed"], Duration::from_secs(60)).await;
    node.send(Method::PATCH, "/me", &ada, &json!({ "email_notifications": true })).await.unwrap();

    // The SMTP server goes down: the job still completes, the mail waits and is retried.
    let dir = smtp.stop();
    let while_down = submit_targets(&node, &ada, &qc_only("while the mail was down")).await;
    wait_state(&node, &ada, &while_down, &["completed"], Duration::from_secs(60)).await;
    wait_for("a failed send in the log", Duration::from_secs(30), || async {
        Ok(node.log().contains("could not send a job mail; will retry"))
    })
    .await
    .unwrap();
    let smtp = SmtpServer::start(port, dir).await;
    let mails = smtp.wait_mails(4).await;
    assert_eq!(subject(&mails[3]), "fedimpute: job \"while the mail was down\" completed");
    // One mail per ended job, and none for the quiet one.
    let subjects: Vec<String> = mails.iter().map(subject).collect();
    assert_eq!(subjects.len(), 4, "{subjects:?}");
    assert!(!subjects.iter().any(|s| s.contains("quiet")), "{subjects:?}");
    // The address is the user's own business: not in the node's log.
    assert!(!node.log().contains("ada@inst-a.test"));
}

#[tokio::test]
async fn smtp_settings_are_checked_when_the_node_starts() {
    fedimpute_tests::install_crypto_provider();
    let node = TestNode::init("Inst B").unwrap();
    let config = std::fs::read_to_string(node.config_path()).unwrap();
    let plain_remote = format!(
        "{config}\n[smtp]\nhost = \"smtp.example.org\"\nsecurity = \"none\"\nfrom = \"a@example.org\"\n\
         public_url = \"https://n.example.org\"\n"
    );
    std::fs::write(node.config_path(), plain_remote).unwrap();
    let out = fedimpute(&["smtp", "test", "--config", &node.config_arg(), "--to", "x@example.org"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unencrypted"), "{}", String::from_utf8_lossy(&out.stderr));
}
