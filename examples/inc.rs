//! The seed's first dask program, in quarry:
//!
//! ```python
//! client = Client('192.168.14.13:8786')
//! x = client.submit(inc, 10); print(x.result())
//! L = client.map(inc, range(1000)); print(client.gather(L))
//! ```
//!
//! `cargo run --release --example inc` runs it on an embedded cluster;
//! `cargo run --release --example inc -- tcp://HOST:8786` runs it on a
//! scheduler started with `quarry scheduler` and workers started with
//! `quarry worker tcp://HOST:8786`.

use futures::StreamExt;
use quarry::{as_completed, Client, LocalCluster};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let address = std::env::args().nth(1);
    let (client, cluster) = match address {
        Some(address) => (Client::connect(&address).await?, None),
        None => {
            let cluster = LocalCluster::builder().workers(2).start().await?;
            (cluster.client().await?, Some(cluster))
        }
    };

    let started = Instant::now();
    let x = client.submit::<i64, i64>("inc", &10)?;
    println!("inc(10) = {}", x.result().await?);

    let futures = client.map::<i64, i64, _>("inc", 0..1000)?;
    let results = client.gather(futures).await?;
    println!(
        "gather: {} results, first {:?}, last {:?}",
        results.len(),
        &results[..3],
        results.last()
    );

    // The same map, consumed as results finish instead of all at once.
    let futures = client.map::<i64, i64, _>("inc", 0..1000)?;
    let mut completed = as_completed(futures);
    let mut sum: i64 = 0;
    while let Some((_, result)) = completed.next().await {
        sum = sum.wrapping_add(result?);
    }
    println!("as_completed: checksum {sum}");
    println!("took {:.2?}", started.elapsed());

    drop(client);
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    Ok(())
}
