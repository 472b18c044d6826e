//! The seed's grid search, in Rust: a decision tree on the adult census
//! data, one task per parameter set, on an embedded cluster.
//!
//! The dataset is a *broadcast input* of the job: every task reads it
//! through its [`TaskContext`], and each worker fetches it once into its
//! cache — no copying `dataset.pkl` into every worker's home directory.
//! Broadcast inputs belong to a job, so the grid is mapped over a job
//! opened with [`Client::open_job`]: [`quarry::Job::map`] works like
//! [`Client::map`] (one task of the registered `fit_tree` per parameter set,
//! futures in grid order), and [`quarry::Job::gather`] collects the scores.
//!
//! ```text
//! python3 examples/adult-grid-search/generate.py   # or the real adult.data
//! cargo run --release --example grid_search [-- PATH/TO/adult.data]
//! ```
//!
//! The model is deliberately small: a CART-style tree with Gini impurity,
//! numeric splits at the column's quantiles and one-category-vs-rest splits
//! for categorical columns. The grid varies its depth and its minimum leaf
//! size.

use futures::StreamExt;
use quarry::parts::store::StoreResolver;
use quarry::{Client, JobOptions, LocalCluster, Registry, TaskContext};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// One point of the grid.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Params {
    max_depth: u32,
    min_samples_leaf: usize,
}

/// What each task returns.
#[derive(Debug, Serialize, Deserialize)]
struct Score {
    accuracy: f64,
    train_accuracy: f64,
    leaves: usize,
}

/// Columns of the UCI layout, the label last; `true` marks numeric ones.
const COLUMNS: [(&str, bool); 14] = [
    ("age", true),
    ("workclass", false),
    ("fnlwgt", true),
    ("education", false),
    ("education-num", true),
    ("marital-status", false),
    ("occupation", false),
    ("relationship", false),
    ("race", false),
    ("sex", false),
    ("capital-gain", true),
    ("capital-loss", true),
    ("hours-per-week", true),
    ("native-country", false),
];

/// Candidate thresholds per numeric column.
const BINS: usize = 32;

/// A column with every value reduced to a small code: the quantile bin of a
/// number, or the index of a category.
struct Column {
    numeric: bool,
    codes: Vec<u8>,
    distinct: usize,
}

struct Dataset {
    columns: Vec<Column>,
    labels: Vec<bool>,
}

fn parse(text: &str) -> Result<Dataset, String> {
    let mut raw: Vec<Vec<&str>> = vec![Vec::new(); COLUMNS.len()];
    let mut labels = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != COLUMNS.len() + 1 {
            continue; // blank lines, adult.test's header
        }
        for (column, field) in raw.iter_mut().zip(&fields) {
            column.push(field);
        }
        labels.push(fields[COLUMNS.len()].trim_end_matches('.') == ">50K");
    }
    if labels.is_empty() {
        return Err("no rows in the adult layout (15 comma-separated fields)".into());
    }
    let columns = raw
        .iter()
        .zip(COLUMNS)
        .map(|(values, (name, numeric))| {
            if numeric {
                let numbers: Vec<f64> = values
                    .iter()
                    .map(|v| {
                        v.parse()
                            .map_err(|_| format!("{name}: `{v}` is not a number"))
                    })
                    .collect::<Result<_, _>>()?;
                let mut sorted = numbers.clone();
                sorted.sort_by(f64::total_cmp);
                let mut cuts: Vec<f64> =
                    (1..BINS).map(|i| sorted[i * sorted.len() / BINS]).collect();
                cuts.dedup();
                let codes = numbers
                    .iter()
                    .map(|x| cuts.partition_point(|cut| cut < x) as u8)
                    .collect();
                Ok(Column {
                    numeric: true,
                    codes,
                    distinct: cuts.len() + 1,
                })
            } else {
                let mut categories: Vec<&str> = values.clone();
                categories.sort_unstable();
                categories.dedup();
                if categories.len() > usize::from(u8::MAX) {
                    return Err(format!("{name}: too many categories"));
                }
                let codes = values
                    .iter()
                    .map(|v| categories.binary_search(v).unwrap_or(0) as u8)
                    .collect();
                Ok(Column {
                    numeric: false,
                    codes,
                    distinct: categories.len(),
                })
            }
        })
        .collect::<Result<_, String>>()?;
    Ok(Dataset { columns, labels })
}

/// How a node splits: rows whose code is `<= code` (numeric) or `== code`
/// (categorical) go left.
#[derive(Clone, Copy)]
struct Split {
    column: usize,
    code: u8,
}

enum Node {
    Leaf(bool),
    Inner {
        split: Split,
        left: Box<Node>,
        right: Box<Node>,
    },
}

fn gini(positive: usize, total: usize) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let p = positive as f64 / total as f64;
    2.0 * p * (1.0 - p) * total as f64
}

fn goes_left(data: &Dataset, split: Split, row: usize) -> bool {
    let column = &data.columns[split.column];
    let code = column.codes[row];
    if column.numeric {
        code <= split.code
    } else {
        code == split.code
    }
}

fn best_split(data: &Dataset, rows: &[usize], min_leaf: usize) -> Option<Split> {
    let total = rows.len();
    let positive = rows.iter().filter(|&&r| data.labels[r]).count();
    let mut best: Option<(f64, Split)> = None;
    let parent = gini(positive, total);
    for (index, column) in data.columns.iter().enumerate() {
        let mut counts = vec![(0usize, 0usize); column.distinct];
        for &row in rows {
            let slot = &mut counts[usize::from(column.codes[row])];
            slot.0 += 1;
            slot.1 += usize::from(data.labels[row]);
        }
        let mut left = (0usize, 0usize);
        for (code, &(n, p)) in counts.iter().enumerate() {
            let side = if column.numeric {
                left = (left.0 + n, left.1 + p);
                left
            } else {
                (n, p)
            };
            let (right_n, right_p) = (total - side.0, positive - side.1);
            if side.0 < min_leaf || right_n < min_leaf {
                continue;
            }
            let gain = parent - gini(side.1, side.0) - gini(right_p, right_n);
            if gain > 1e-9 && best.is_none_or(|(g, _)| gain > g) {
                best = Some((
                    gain,
                    Split {
                        column: index,
                        code: code as u8,
                    },
                ));
            }
        }
    }
    best.map(|(_, split)| split)
}

fn grow(data: &Dataset, rows: Vec<usize>, depth: u32, params: Params) -> Node {
    let positive = rows.iter().filter(|&&r| data.labels[r]).count();
    let majority = positive * 2 > rows.len();
    if depth >= params.max_depth || positive == 0 || positive == rows.len() {
        return Node::Leaf(majority);
    }
    let Some(split) = best_split(data, &rows, params.min_samples_leaf.max(1)) else {
        return Node::Leaf(majority);
    };
    let (left, right): (Vec<usize>, Vec<usize>) =
        rows.into_iter().partition(|&r| goes_left(data, split, r));
    Node::Inner {
        split,
        left: Box::new(grow(data, left, depth + 1, params)),
        right: Box::new(grow(data, right, depth + 1, params)),
    }
}

fn predict(node: &Node, data: &Dataset, row: usize) -> bool {
    match node {
        Node::Leaf(label) => *label,
        Node::Inner { split, left, right } => {
            let next = if goes_left(data, *split, row) {
                left
            } else {
                right
            };
            predict(next, data, row)
        }
    }
}

fn leaves(node: &Node) -> usize {
    match node {
        Node::Leaf(_) => 1,
        Node::Inner { left, right, .. } => leaves(left) + leaves(right),
    }
}

/// The task: fit a tree with `params` on 80% of the broadcast dataset and
/// score it on the other 20%.
fn fit_tree(ctx: &TaskContext, params: Params) -> Result<Score, String> {
    let bytes = ctx
        .broadcast("dataset")?
        .read()
        .map_err(|e| format!("cannot read the dataset: {e}"))?;
    let data = parse(&String::from_utf8_lossy(&bytes))?;
    // A fixed shuffle (same for every task), then 80/20.
    let mut order: Vec<usize> = (0..data.labels.len()).collect();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for i in (1..order.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let test = order.split_off(order.len() * 4 / 5);
    let train = order;
    let tree = grow(&data, train.clone(), 0, params);
    let accuracy = |rows: &[usize]| {
        let right = rows
            .iter()
            .filter(|&&r| predict(&tree, &data, r) == data.labels[r])
            .count();
        right as f64 / rows.len().max(1) as f64
    };
    Ok(Score {
        accuracy: accuracy(&test),
        train_accuracy: accuracy(&train),
        leaves: leaves(&tree),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../examples/adult-grid-search/data/adult.data")
        });
    let path = std::path::absolute(&path)?;
    if !path.is_file() {
        return Err(format!(
            "no dataset at {}: run `python3 examples/adult-grid-search/generate.py` (or put \
             the UCI adult.data there, or pass its path)",
            path.display()
        )
        .into());
    }
    // Pin the dataset as it is now: every task reads exactly this version.
    let dataset = StoreResolver::from_env()
        .list_refs(&path.display().to_string())
        .next()
        .await
        .ok_or("the dataset vanished")??;

    let cluster = LocalCluster::builder()
        .workers(2)
        .registry(Registry::new().task_with_context("fit_tree", fit_tree))
        .start()
        .await?;
    let client: Client = cluster.client().await?;
    let job = client.open_job(JobOptions {
        name: "grid-search-rs".into(),
        broadcast: vec![("dataset".into(), dataset)],
        ..JobOptions::default()
    })?;
    let mut grid = Vec::new();
    for max_depth in [2, 4, 6, 8, 10, 12] {
        for min_samples_leaf in [1, 5, 25, 100] {
            grid.push(Params {
                max_depth,
                min_samples_leaf,
            });
        }
    }
    let started = Instant::now();
    let futures = job.map::<Params, Score, _>("fit_tree", grid.iter().copied())?;
    job.seal()?;
    let mut scores: Vec<(Params, Score)> =
        grid.into_iter().zip(job.gather(futures).await?).collect();
    scores.sort_by(|a, b| b.1.accuracy.total_cmp(&a.1.accuracy));
    println!(
        "{} parameter sets in {:.2?}; best first:",
        scores.len(),
        started.elapsed()
    );
    println!("max_depth  min_samples_leaf  accuracy  train_accuracy  leaves");
    for (params, score) in scores.iter().take(5) {
        println!(
            "{:>9}  {:>16}  {:>8.4}  {:>14.4}  {:>6}",
            params.max_depth,
            params.min_samples_leaf,
            score.accuracy,
            score.train_accuracy,
            score.leaves
        );
    }

    drop(client);
    cluster.shutdown().await;
    Ok(())
}
