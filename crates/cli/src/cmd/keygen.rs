//! `quarry keygen`.

use anyhow::Result;
use quarry_net::curve::{authorize, files};
use quarry_net::KeyPair;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `quarry keygen`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory to write keys into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Add one more key of this role to an existing directory instead of
    /// creating a scheduler, a client and a worker key.
    #[arg(long, value_parser = ["client", "worker"])]
    role: Option<String>,
    /// File name for the new key pair with --role [default: ROLE-N].
    #[arg(long)]
    name: Option<String>,
}

fn authorized_file(role: &str) -> &'static str {
    if role == "worker" {
        files::AUTHORIZED_WORKERS
    } else {
        files::AUTHORIZED_CLIENTS
    }
}

fn add_peer(out: &std::path::Path, role: &str, name: &str) -> Result<()> {
    let pair = KeyPair::generate()?;
    let (key, _) = pair.write(out, name)?;
    authorize(&out.join(authorized_file(role)), &pair.public, name)?;
    println!(
        "{role} key pair: {} (authorized as a {role})",
        key.display()
    );
    Ok(())
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.role {
        None => {
            let scheduler = KeyPair::generate()?;
            let (key, public) = scheduler.write(&args.out, "scheduler")?;
            println!(
                "scheduler key pair: {} (public key: {})",
                key.display(),
                public.display()
            );
            add_peer(&args.out, "client", "client")?;
            add_peer(&args.out, "worker", "worker")?;
            println!(
                "\nstart the scheduler with:   quarry scheduler --keys {dir}\n\
                 workers and clients need:   QUARRY_SERVER_KEY={dir}/{pubfile} \
                 QUARRY_KEY_FILE={dir}/worker.key (or client.key)\n\
                 secret key files are mode 0600: copy each only to the machine that uses it.",
                dir = args.out.display(),
                pubfile = files::SCHEDULER_PUB
            );
        }
        Some(role) => {
            let name = match args.name {
                Some(name) => name,
                None => (2..)
                    .map(|n| format!("{role}-{n}"))
                    .find(|n| !args.out.join(format!("{n}.key")).exists())
                    .unwrap_or_else(|| role.clone()),
            };
            add_peer(&args.out, &role, &name)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
