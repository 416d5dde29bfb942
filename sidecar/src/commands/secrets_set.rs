//! `secrets set NAME` and `secrets rotate NAME`: a value (from stdin or a file, never from the
//! command line, where `ps` and shell history would show it) or a generated one, encrypted
//! into the secret's file in git-crypt's format. Commit the file; `secrets apply` deploys it.

use std::io::Read;
use std::path::PathBuf;

use concierge_sidecar::{Config, Error, secrets_rotate, secrets_set};
use zeroize::Zeroizing;

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The secret's name (its file in secrets.dir).
    name: String,
    /// Read the value from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The secret's name (its file in secrets.dir).
    name: String,
}

pub fn set(config: &Config, args: SetArgs) -> Result<(), Error> {
    let mut value = Zeroizing::new(Vec::new());
    match &args.from_file {
        Some(path) => {
            *value = std::fs::read(path)
                .map_err(|e| Error::Usage(format!("--from-file {}: {e}", path.display())))?;
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut value)
                .map_err(|e| Error::Usage(format!("reading the value from stdin: {e}")))?;
        }
    }
    if value.is_empty() {
        return Err(Error::Usage(format!(
            "no value for {}: give it on stdin or with --from-file",
            args.name
        )));
    }
    let (path, hash) = secrets_set(&config.secrets, &args.name, &value)?;
    println!(
        "{}: encrypted into {} (sha256 {hash}…); commit it, then secrets apply",
        args.name,
        path.display()
    );
    Ok(())
}

pub fn rotate(config: &Config, args: RotateArgs) -> Result<(), Error> {
    let (path, hash) = secrets_rotate(&config.secrets, &args.name)?;
    println!(
        "{}: a new {}-character value encrypted into {} (sha256 {hash}…); commit it, then secrets apply",
        args.name,
        config.secrets.rotate_length,
        path.display()
    );
    Ok(())
}
