//! The man pages: clap_mangen renders them from the same clap definitions the binary parses, and the
//! top-level page gets the sections a man page reader looks for that clap does not model (EXIT STATUS,
//! ENVIRONMENT, FILES, EXAMPLES). `examples/gen-man.rs` writes them; the ship tests render them.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;

/// The top-level page, `d1vault.1`, in roff.
pub fn top_page() -> Vec<u8> {
    let man = clap_mangen::Man::new(Cli::command());
    let mut out = Vec::new();
    let rendered = (|| -> std::io::Result<()> {
        man.render_title(&mut out)?;
        man.render_name_section(&mut out)?;
        man.render_synopsis_section(&mut out)?;
        man.render_description_section(&mut out)?;
        man.render_options_section(&mut out)?;
        man.render_subcommands_section(&mut out)?;
        out.write_all(EXTRA_SECTIONS.as_bytes())?;
        man.render_version_section(&mut out)
    })();
    rendered.expect("writing to a Vec cannot fail");
    out
}

/// Writes `d1vault.1` and one page per subcommand (`d1vault-restore.1`, `d1vault-migrations-apply.1`, ...)
/// into `dir`, which must exist.
pub fn write_pages(dir: &Path) -> std::io::Result<()> {
    // One page per (non-hidden) subcommand, recursively; the top page is then replaced by the full one.
    clap_mangen::generate_to(Cli::command(), dir)?;
    std::fs::write(dir.join("d1vault.1"), top_page())
}

/// The top page's own sections, in roff.
const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
.B 0
Success: every backup, verify, restore or check asked for succeeded (an unchanged database skipped by
skip_unchanged is a success).
.TP
.B 1
A failure: a backup, verify, prune deletion or online check failed, or restore refused or failed. The
error lines on stderr say what failed and what to do; a failed backup stored nothing.
.TP
.B 2
A usage or configuration error: a bad flag, a database that is not configured, or a configuration file
that does not load (every problem is listed with its file, line and column).
.SH ENVIRONMENT
.TP
.B D1VAULT_CONFIG
The configuration file, when \-\-config is not given.
.TP
.B CLOUDFLARE_API_TOKEN\fR, \fBCLOUDFLARE_ACCOUNT_ID
Used when the configuration's [cloudflare] leaves api_token or account_id out, as wrangler reads them.
.TP
.B RUST_LOG
A tracing filter (for example d1vault=debug) that replaces the levels of \-v and \-q.
.TP
.B XDG_CONFIG_HOME
Where the user's configuration file is looked for (default ~/.config).
.TP
Any variable a configuration string names as ${VAR}
Expanded when the file is loaded; an unset variable is a configuration error.
.SH FILES
.TP
.I ./d1vault.toml
The configuration, when neither \-\-config nor D1VAULT_CONFIG names one.
.TP
.I $XDG_CONFIG_HOME/d1vault/d1vault.toml
The user's configuration, after ./d1vault.toml (default ~/.config/d1vault/d1vault.toml).
.TP
.I /etc/d1vault/d1vault.toml
The system configuration, used last.
.TP
.I daemon.state_dir
The catalog of runs (status), the spool for restores and verifies, and the daemon's lock file.
.SH EXAMPLES
.TP
.B d1vault check-config \-\-online
Validate the configuration, show each database's next runs, and check the token, the databases and
write access to storage.
.TP
.B d1vault backup blog
Back up one database now (skipped as unchanged when its data has not changed; \-\-force exports anyway).
.TP
.B d1vault list blog
The complete backups of blog, newest first.
.TP
.B d1vault verify blog
Download the newest backup, check its hashes and load it into a scratch SQLite database.
.TP
.B d1vault restore blog \-\-at 36h \-\-to\-sqlite ./blog.sqlite
The newest backup from at least 36 hours ago, into a local SQLite file.
.TP
.B d1vault restore blog \-\-to\-d1 blog \-\-replace
Put a backup back into the database it came from (a safety backup is taken first).
.TP
.B d1vault run
The daemon: backups on schedule, retention, /healthz and /metrics.
.SH "SEE ALSO"
The runbook (docs/runbook.md) and the configuration reference (docs/configuration.md) in the source.
"#;
