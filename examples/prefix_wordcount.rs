//! Word count over every object under a prefix, with the final reduce in
//! the client: the built-in `wordcount` function returns `{word: count}`
//! for its shard, and the results are merged as they arrive.
//!
//! ```text
//! cargo run --release --example prefix_wordcount
//! cargo run --release --example prefix_wordcount -- s3://bucket/logs/2026/
//! cargo run --release --example prefix_wordcount -- s3://bucket/logs/ \
//!     --glob '**/*.txt' --chunk-size 67108864 --scheduler tcp://HOST:8786
//! ```
//!
//! Without a URL it writes a few text files to a temporary directory and
//! counts them on an embedded cluster of two workers. With a URL it counts
//! that prefix (S3 settings come from the usual `AWS_*` variables), on an
//! embedded cluster or, with `--scheduler`, on running `quarry worker`s.
//! The map runs twice: the second pass reads every shard from the workers'
//! caches, which the printed job metrics show.

use quarry::parts::client::MapPrefixOptions;
use quarry::parts::proto::JobInfo;
use quarry::{Client, LocalCluster};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Command-line options.
struct Options {
    url: Option<String>,
    scheduler: Option<String>,
    glob: Option<String>,
    chunk_size: Option<u64>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        url: None,
        scheduler: None,
        glob: None,
        chunk_size: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--scheduler" => options.scheduler = Some(value("--scheduler")?),
            "--glob" => options.glob = Some(value("--glob")?),
            "--chunk-size" => {
                let text = value("--chunk-size")?;
                let bytes = text
                    .parse()
                    .map_err(|_| format!("--chunk-size takes bytes, not {text:?}"))?;
                options.chunk_size = Some(bytes);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            url if options.url.is_none() => options.url = Some(url.to_string()),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    Ok(options)
}

/// Writes the sample shards and returns their directory and the word
/// counts they hold, computed here for comparison.
fn write_sample(dir: &PathBuf) -> std::io::Result<BTreeMap<String, u64>> {
    const WORDS: [&str; 6] = ["quarry", "shard", "cache", "worker", "prefix", "reduce"];
    std::fs::create_dir_all(dir)?;
    let mut expected = BTreeMap::new();
    for file in 0..8usize {
        let mut text = String::new();
        for line in 0..200usize {
            for k in 0..(1 + (file + line) % 5) {
                let word = WORDS[(file * 7 + line * 3 + k) % WORDS.len()];
                text.push_str(word);
                text.push(' ');
                *expected.entry(word.to_string()).or_insert(0) += 1;
            }
            text.push('\n');
        }
        std::fs::write(dir.join(format!("part-{file:02}.txt")), text)?;
    }
    Ok(expected)
}

fn describe(pass: u32, seconds: f64, tasks: u64, info: &JobInfo) -> String {
    let placed = info.tasks_local + info.tasks_remote;
    let locality = if placed == 0 {
        0.0
    } else {
        100.0 * info.tasks_local as f64 / placed as f64
    };
    format!(
        "pass {pass}: {tasks} tasks in {seconds:.2} s; locality {locality:.0}% \
         ({} local, {} remote); {} bytes from the store, {} from caches; \
         {} cache hits, {} misses",
        info.tasks_local,
        info.tasks_remote,
        info.stats.bytes_from_store,
        info.stats.bytes_from_cache,
        info.stats.cache_hits,
        info.stats.cache_misses,
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let options = parse_options()?;

    let sample_dir = std::env::temp_dir().join(format!("quarry-wordcount-{}", std::process::id()));
    let (url, expected) = match &options.url {
        Some(url) => (url.clone(), None),
        None => {
            let expected = write_sample(&sample_dir)?;
            (sample_dir.display().to_string(), Some(expected))
        }
    };
    let (client, cluster) = match &options.scheduler {
        Some(address) => (Client::connect(address).await?, None),
        None => {
            let cluster = LocalCluster::builder().workers(2).start().await?;
            (cluster.client().await?, Some(cluster))
        }
    };

    let mut totals = BTreeMap::new();
    for pass in 1..=2 {
        if pass > 1 {
            // Workers report what they cached every 200 ms; give the
            // scheduler a moment to hear of it before placing pass 2.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let started = Instant::now();
        let map_options = MapPrefixOptions {
            glob: options.glob.clone(),
            chunk_size: options.chunk_size,
            retries: 2,
            ..MapPrefixOptions::default()
        };
        let mut shards =
            client.map_prefix::<BTreeMap<String, u64>>("wordcount", &url, map_options)?;
        let job = shards.job();
        let mut tasks = 0u64;
        totals = BTreeMap::new();
        // The reduce: merge each shard's counts as soon as it finishes.
        while let Some(finished) = shards.next().await {
            let finished = finished?;
            let counts = finished.result?;
            tasks += 1;
            for (word, count) in counts {
                *totals.entry(word).or_insert(0u64) += count;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let info = client.job_info(job).await?;
        println!("{}", describe(pass, seconds, tasks, &info));
    }

    let mut top: Vec<(&String, &u64)> = totals.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("{} distinct words; most frequent:", totals.len());
    for (word, count) in top.iter().take(10) {
        println!("{count:>12}  {word}");
    }
    if let Some(expected) = expected {
        let verdict = if expected == totals {
            "match"
        } else {
            "DIFFER"
        };
        println!("the counts {verdict} a count made without quarry");
        let _ = std::fs::remove_dir_all(&sample_dir);
        if expected != totals {
            return Err("the distributed word count differs from the local one".into());
        }
    }

    drop(client);
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    Ok(())
}
