//! `[encryption]`: backups sealed with age before anything leaves the host (CONTRACT.md). The host that
//! takes backups holds only public keys ([`Recipients`]); the private key ([`Identities`]) is needed only
//! where `restore` and `verify` run. The format is age's own (`age-encryption.org/v1`), so the `age` CLI
//! decrypts what d1vault stores and d1vault reads what the CLI encrypts.
//!
//! Native X25519 recipients (`age1...`) only: the age crate's SSH support depends on the `rsa` crate, whose
//! decryption has an unfixed timing side channel (RUSTSEC-2023-0071). An SSH key in the configuration is a
//! configuration error that says so.

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use age::x25519;
use tokio::io::AsyncBufRead;
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use crate::pipeline::compress::BoxRead;

/// The suffix of an encrypted dump's file name (`dump.sql.zst.age`).
pub const SUFFIX: &str = ".age";

/// The public keys every backup is encrypted to, parsed at configuration load (fail closed: a key that
/// does not parse is a configuration error, never a plaintext backup).
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<x25519::Recipient>,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.public()).finish()
    }
}

impl Recipients {
    /// Parses `keys` (each an `age1...` public key); the problem of the first that does not parse, or of an
    /// empty list.
    pub fn parse<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Recipients, String> {
        let mut parsed = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let key = key.trim();
            if key.starts_with("ssh-") || key.starts_with("ecdsa-") {
                return Err(format!(
                    "recipient {i} is an SSH key; d1vault takes native age keys only (age1..., made by \
                     `age-keygen`): the age crate's SSH support depends on an RSA implementation with an \
                     open timing advisory"
                ));
            }
            let recipient = x25519::Recipient::from_str(key)
                .map_err(|e| format!("recipient {i} is not an age public key (age1...): {e}"))?;
            parsed.push(recipient);
        }
        if parsed.is_empty() {
            return Err(
                "no recipient: with [encryption], every backup needs at least one age public \
                        key (age1...)"
                    .into(),
            );
        }
        Ok(Recipients { keys: parsed })
    }

    /// Reads recipients from the text of a recipients file: one key a line; blank lines and `#` comments
    /// are skipped, as the `age -R` CLI does.
    pub fn parse_file_text(text: &str) -> Result<Recipients, String> {
        Recipients::parse(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#')),
        )
    }

    /// The public keys, as `age1...` strings (what the manifest records and `list` shows).
    pub fn public(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.to_string()).collect()
    }

    /// Wraps `output`: what is written to the returned writer reaches `output` encrypted to every
    /// recipient. Call `finish` on it at the end, or the stream is truncated (and fails to decrypt).
    pub fn encrypt<W: io::Write>(&self, output: W) -> io::Result<age::stream::StreamWriter<W>> {
        let encryptor =
            age::Encryptor::with_recipients(self.keys.iter().map(|k| k as &dyn age::Recipient))
                .map_err(|e| io::Error::other(format!("age: {e}")))?;
        encryptor.wrap_output(output)
    }
}

/// Private keys that decrypt backups, read from an age identity file (`age-keygen`'s output). Never
/// printed: its `Debug` says only how many keys it holds.
#[derive(Clone)]
pub struct Identities {
    keys: Arc<Vec<Box<dyn age::Identity + Send + Sync>>>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities({} keys)", self.keys.len())
    }
}

impl Identities {
    /// Reads the identity file at `path`. The error names the file, never its contents.
    pub fn load(path: &Path) -> Result<Identities, String> {
        let file = age::IdentityFile::from_file(path.to_string_lossy().into_owned())
            .map_err(|e| format!("cannot read the age identity file {}: {e}", path.display()))?;
        let keys = file.into_identities().map_err(|e| {
            format!(
                "the age identity file {} holds no usable identity: {e}",
                path.display()
            )
        })?;
        if keys.is_empty() {
            return Err(format!(
                "the age identity file {} holds no identity (make one with `age-keygen -o FILE`)",
                path.display()
            ));
        }
        Ok(Identities {
            keys: Arc::new(keys),
        })
    }

    /// Decrypts the age stream `input`. Fails at once (before any plaintext) when the header does not
    /// parse or none of these identities opens it.
    pub async fn decrypt<'a>(
        &self,
        input: impl AsyncBufRead + Send + Unpin + 'a,
    ) -> Result<BoxRead<'a>, String> {
        let decryptor = age::Decryptor::new_async_buffered(input.compat())
            .await
            .map_err(|e| format!("the stored object is not a readable age file: {e}"))?;
        let reader = decryptor
            .decrypt_async(self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => "none of the identities given can decrypt this \
                                                      backup (it was encrypted to other recipients; \
                                                      `d1vault list` shows which)"
                    .to_string(),
                e => format!("decrypting: {e}"),
            })?;
        Ok(Box::new(reader.compat()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::AsyncReadExt;

    #[test]
    fn broken_recipient_lists_are_refused_with_the_reason() {
        // Proves fail-closed parsing: an empty list, a key that is not one, and an SSH key all refuse.
        assert!(Recipients::parse([]).unwrap_err().contains("no recipient"));
        assert!(
            Recipients::parse(["age1nope"])
                .unwrap_err()
                .contains("recipient 0")
        );
        let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH ops@example";
        assert!(Recipients::parse([ssh]).unwrap_err().contains("SSH key"));
        let text = "# ops\n\n";
        assert!(Recipients::parse_file_text(text).is_err());
    }

    #[tokio::test]
    async fn what_is_encrypted_to_a_key_decrypts_with_its_identity_only() {
        // Proves the round trip through the age format, and that another identity is refused before
        // any plaintext is produced.
        let identity = x25519::Identity::generate();
        let other = x25519::Identity::generate();
        let recipients = Recipients::parse([identity.to_public().to_string().as_str()]).unwrap();
        let mut sealed = Vec::new();
        let mut writer = recipients.encrypt(&mut sealed).unwrap();
        writer.write_all(b"CREATE TABLE t(x);").unwrap();
        writer.finish().unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1"));

        let keyring = |id: x25519::Identity| Identities {
            keys: Arc::new(vec![Box::new(id) as Box<dyn age::Identity + Send + Sync>]),
        };
        let mut plain = Vec::new();
        keyring(identity)
            .decrypt(&sealed[..])
            .await
            .unwrap()
            .read_to_end(&mut plain)
            .await
            .unwrap();
        assert_eq!(plain, b"CREATE TABLE t(x);");
        let refused = keyring(other).decrypt(&sealed[..]).await.err().unwrap();
        assert!(refused.contains("none of the identities"), "{refused}");
    }
}
