//! `replyd` command line: clap parses, one function per command runs.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use replyd::app::{App, Core};
use replyd::clock::Clock;
use replyd::config::Config;
use replyd::ingest::SpoolError;
use replyd::logging::{self, LogFormat};
use replyd::secrets_file;
use replyd::store::DeadLetterAction;
use replyd::sweep::{SweepSettings, Sweeper};
use replyd::tools::{fake_cloud_api, simulate};
use replyd::{offline, operators};

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
    /// Run the service: webhooks, admin API, metrics, spool replay. Secrets not configured come
    /// from <data dir>/secrets.toml, generated (0600) on the first run.
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
    /// Check the configuration, data directory, secrets, store, spool, Cloud API tokens,
    /// gateway sessions and Redis; print a checklist with a fix for each problem. Exits
    /// non-zero on any failed check.
    Doctor,
    /// Reconcile now: re-enqueue pending messages that pass every gate, silence the rest with
    /// their reason, and print every decision.
    Sweep {
        /// Print the decisions without acting on them (takes no lock, writes nothing).
        #[arg(long)]
        dry_run: bool,
    },
    /// Operator controls of a conversation (takeover, release, escalate, resolve) and the list.
    Conversation {
        #[command(subcommand)]
        command: operators::ConversationCommand,
    },
    /// A contact's consent (opt-out, opt-in).
    Contact {
        #[command(subcommand)]
        command: operators::ContactCommand,
    },
    /// A local stand-in for the Cloud API send endpoint and the WASender gateway: records every
    /// send and read receipt, injects faults, posts status webhooks.
    FakeCloudApi(fake_cloud_api::FakeCloudArgs),
    /// The dead-letter queue: messages that could not be answered, payloads that could not be read.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Remove what is past the retention (`REPLYD_RETENTION`, default 30d): message bodies and
    /// payloads, reply texts, statuses, sweep history, settled dead letters. Message ids and
    /// outcomes stay, so a late re-delivery is still a duplicate.
    Prune {
        /// Count what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List open dead letters, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Send dead-lettered messages back through the gates (once the cause is fixed); payloads
    /// are parsed and ingested again.
    Replay {
        /// Dead letter ids, replayed in the order given.
        ids: Vec<i64>,
        /// Every open dead letter, oldest first.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Close a dead letter without replaying it.
    Discard { id: i64 },
}

#[derive(Debug, Subcommand)]
enum SpoolCommand {
    /// Re-ingest every spooled payload (duplicates are recognised and skipped). Refused while
    /// a running server owns the spool: it replays by itself, or ask it with
    /// `POST /api/v1/spool/replay`.
    Replay,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(LogFormat::configured(cli.config.as_deref()));
    match cli.command {
        Command::Serve => serve(load(&cli.config)?).await,
        Command::Migrate => migrate(load(&cli.config)?).await,
        Command::Spool {
            command: SpoolCommand::Replay,
        } => spool_replay(load(&cli.config)?).await,
        Command::Conversation { command } => conversation(load(&cli.config)?, command).await,
        Command::Contact { command } => contact(load(&cli.config)?, command).await,
        Command::Sweep { dry_run } => sweep(load(&cli.config)?, dry_run).await,
        Command::FakeCloudApi(args) => fake_cloud_api::run(args).await,
        Command::Dlq { command } => dlq(load(&cli.config)?, command).await,
        Command::Doctor => doctor(cli.config.as_deref()).await,
        Command::Simulate(args) => simulate::command(args, cli.config.as_deref()).await,
        Command::Prune { dry_run } => prune(load(&cli.config)?, dry_run).await,
    }
}

fn load(path: &Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(Config::load(path.as_deref())?)
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    // Unset secrets come from the data directory, generated there on the first run.
    let filled = secrets_file::fill_or_generate(&mut config)?;
    if let Some(notice) = filled.first_run_notice(&config) {
        // Not `println!`, which panics when stdout cannot be written (a full disk): the values
        // are in the file either way.
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{notice}");
        tracing::info!(file = %filled.path.display(), "generated the secrets (first run)");
    } else if !filled.from_file.is_empty() {
        let names: Vec<&str> = filled.from_file.iter().map(|n| n.key()).collect();
        tracing::info!(file = %filled.path.display(), secrets = ?names, "using the generated secrets");
    }
    let app = App::build(config, Clock::system()).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run(shutdown).await
}

async fn doctor(config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let report = replyd::tools::doctor::run_from(config).await;
    print!("{}", report.render());
    anyhow::ensure!(report.ok(), "doctor found {} problem(s)", report.failures());
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let core = Core::open_offline(&config, Clock::system()).await?;
    println!("database at {} is up to date", config.database_url);
    drop(core);
    Ok(())
}

async fn spool_replay(config: Config) -> anyhow::Result<()> {
    let core = match Core::open(&config, Clock::system()).await {
        Ok(core) => core,
        Err(e) => match e.downcast_ref::<SpoolError>() {
            Some(SpoolError::Owned { dir, holder }) => anyhow::bail!(
                "nothing replayed: the spool directory {} is owned by a running replyd server \
                 ({holder}), which replays it by itself every {}. To replay now, ask that server: \
                 POST /api/v1/spool/replay with its admin token (Authorization: Bearer …)",
                dir.display(),
                humantime::format_duration(config.spool_replay_interval)
            ),
            _ => return Err(e),
        },
    };
    let report = offline::spool_replay(&core).await?;
    println!(
        "replayed {} record(s) from {} file(s): {} new message(s), {} duplicate(s), {} torn byte(s) skipped, {} refused record(s) dead-lettered, {} retained for the next replay",
        report.records,
        report.files,
        report.new_messages,
        report.duplicate_messages,
        report.torn_bytes,
        report.dead_lettered,
        report.retained
    );
    Ok(())
}

async fn conversation(
    config: Config,
    command: operators::ConversationCommand,
) -> anyhow::Result<()> {
    let core = Core::open_offline(&config, Clock::system()).await?;
    print!(
        "{}",
        operators::conversation(&core.store, &Clock::system(), command).await?
    );
    Ok(())
}

async fn contact(config: Config, command: operators::ContactCommand) -> anyhow::Result<()> {
    let core = Core::open_offline(&config, Clock::system()).await?;
    print!(
        "{}",
        operators::contact(&core.store, &Clock::system(), command).await?
    );
    Ok(())
}

async fn sweep(config: Config, dry_run: bool) -> anyhow::Result<()> {
    let core = Core::open_offline(&config, Clock::system()).await?;
    let sweeper = Sweeper::new(
        core.store.clone(),
        Clock::system(),
        SweepSettings::from_config(&config),
        core.jobs_ready.clone(),
    );
    let report = sweeper.run_once(dry_run).await.context("sweeping")?;
    report.print_table();
    Ok(())
}

async fn dlq(config: Config, command: DlqCommand) -> anyhow::Result<()> {
    let core = Core::open_offline(&config, Clock::system()).await?;
    match command {
        DlqCommand::List { limit } => {
            let letters = core.store.dead_letters(limit).await?;
            println!(
                "{:>6}  {:<8}  {:<28}  {:>8}  {:<24}  detail",
                "id", "kind", "error", "attempts", "message"
            );
            for l in &letters {
                let detail: String = l.detail.as_deref().unwrap_or("").chars().take(60).collect();
                println!(
                    "{:>6}  {:<8}  {:<28}  {:>8}  {:<24}  {detail}",
                    l.id,
                    l.kind,
                    l.error,
                    l.attempts,
                    l.message_id.as_deref().unwrap_or("-")
                );
            }
            println!("{} open dead letter(s)", letters.len());
        }
        DlqCommand::Replay { ids, all } => {
            let summary = offline::dlq_replay(&core, &ids, all).await?;
            for line in &summary.lines {
                println!("{line}");
            }
            if summary.failed > 0 {
                anyhow::bail!(
                    "{} of {} dead letter(s) not replayed",
                    summary.failed,
                    summary.lines.len()
                );
            }
        }
        DlqCommand::Discard { id } => match core.store.discard_dead_letter(id).await? {
            DeadLetterAction::Discarded => println!("dead letter {id} discarded"),
            DeadLetterAction::NotFound => anyhow::bail!("no dead letter {id}"),
            _ => anyhow::bail!("dead letter {id} is not open"),
        },
    }
    Ok(())
}

async fn prune(config: Config, dry_run: bool) -> anyhow::Result<()> {
    let core = Core::open_offline(&config, Clock::system()).await?;
    let report = offline::prune(&config, &core.store, dry_run).await?;
    print!("{}", report.table());
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
