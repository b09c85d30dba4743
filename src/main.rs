//! `replyd` command line: clap parses, one function per command runs.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use replyd::app::{App, Core};
use replyd::clock::Clock;
use replyd::config::Config;
use replyd::tools::simulate;

#[derive(Debug, Parser)]
#[command(
    name = "replyd",
    version,
    about = "WhatsApp webhook ingest and reply service"
)]
struct Cli {
    /// Configuration file (default: ./replyd.toml when present). REPLYD_* variables override it.
    #[arg(long, global = true, env = "REPLYD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: webhooks, admin API, metrics, spool replay.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// The local spool of payloads that arrived while the store was unavailable.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
    /// Send signed, realistic webhook traffic to a URL and print a summary.
    Simulate(simulate::SimulateArgs),
}

#[derive(Debug, Subcommand)]
enum SpoolCommand {
    /// Re-ingest every spooled payload (duplicates are recognised and skipped).
    Replay,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve => serve(load(&cli.config)?).await,
        Command::Migrate => migrate(load(&cli.config)?).await,
        Command::Spool {
            command: SpoolCommand::Replay,
        } => spool_replay(load(&cli.config)?).await,
        Command::Simulate(args) => {
            let json = args.json;
            let summary = simulate::run(args).await?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                summary.print_table();
            }
            Ok(())
        }
    }
}

fn load(path: &Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(Config::load(path.as_deref())?)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::build(config, Clock::system()).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run(shutdown).await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let core = Core::open(&config, Clock::system()).await?;
    println!("database at {} is up to date", config.database_url);
    drop(core);
    Ok(())
}

async fn spool_replay(config: Config) -> anyhow::Result<()> {
    let core = Core::open(&config, Clock::system()).await?;
    let report = core
        .ingestor
        .replay_spool()
        .await
        .context("replaying the spool")?;
    println!(
        "replayed {} record(s) from {} file(s): {} new message(s), {} duplicate(s), {} torn byte(s) skipped",
        report.records,
        report.files,
        report.new_messages,
        report.duplicate_messages,
        report.torn_bytes
    );
    Ok(())
}

/// SIGINT or SIGTERM: stop taking work, finish what is in flight.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.ok();
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
