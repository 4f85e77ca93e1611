//! Weighted rendezvous hashing: the order of the nodes for one video.
//!
//! The hash is fixed forever (changing it would move every video at once):
//!
//! ```text
//! digest = SHA-256( be32(len(video)) ‖ video ‖ be32(len(node)) ‖ node )
//! x      = the first 8 bytes of digest, big-endian u64
//! h      = ((x >> 12) + 0.5) / 2^52           in (0, 1), exact in f64
//! score  = -weight / ln(h)                     ln from `libm`
//! ```
//!
//! Lengths are byte lengths of the UTF-8 ids, so no two (video, node) pairs
//! encode alike. `h` keeps 52 bits so that adding 0.5 is exact; it lies in
//! [2^-53, 1 - 2^-53], never 0 or 1. The logarithm comes from `libm`, a
//! software implementation, so that every platform computes the same bits;
//! division by it is IEEE 754 and exact to the same bits everywhere.
//!
//! Nodes are ranked by score, highest first. Why this is weighted: with h
//! uniform, -ln(h) / weight is exponential with rate `weight`, and the least
//! of independent exponentials belongs to node i with probability
//! weight_i / W; the highest score is the least of those. Removing a node
//! leaves every other score unchanged, so only the videos it led move, each
//! to its next node; adding one moves only the videos it now leads. Equal
//! scores (never seen in practice) fall back to the smaller node id.

use kinema_core::VideoId;
use sha2::{Digest, Sha256};

use crate::cluster::{Cluster, Node};

/// The position in (0, 1) of `node` for `video`: the `h` of the module doc.
pub fn unit_hash(video: &str, node: &str) -> f64 {
    unit_hash_from(video_prefix(video), node)
}

/// The weighted-rendezvous score of `node` for `video`: -weight / ln(h).
pub fn score(video: &str, node: &str, weight: u64) -> f64 {
    score_of(unit_hash(video, node), weight)
}

/// Every node of `cluster`, highest score for `video` first.
pub fn order<'c>(video: &VideoId, cluster: &'c Cluster) -> Vec<&'c Node> {
    let prefix = video_prefix(video.as_str());
    let mut scored: Vec<(f64, &Node)> = cluster
        .nodes()
        .iter()
        .map(|node| {
            let h = unit_hash_from(prefix.clone(), node.id().as_str());
            (score_of(h, node.weight()), node)
        })
        .collect();
    scored.sort_by(|(score_a, node_a), (score_b, node_b)| {
        score_b
            .total_cmp(score_a)
            .then_with(|| node_a.id().cmp(node_b.id()))
    });
    scored.into_iter().map(|(_, node)| node).collect()
}

/// The hasher after the video's part, cloned for every node.
fn video_prefix(video: &str) -> Sha256 {
    let mut hasher = Sha256::new();
    hash_field(&mut hasher, video);
    hasher
}

fn hash_field(hasher: &mut Sha256, field: &str) {
    // Ids are bounded far below 4 GiB (video ids 64 bytes, node ids 255).
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    hasher.update(len.to_be_bytes());
    hasher.update(field.as_bytes());
}

fn unit_hash_from(mut hasher: Sha256, node: &str) -> f64 {
    hash_field(&mut hasher, node);
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let x = u64::from_be_bytes(first);
    // 2^-52 is a power of two: the product is exact.
    ((x >> 12) as f64 + 0.5) * (1.0 / (1u64 << 52) as f64)
}

fn score_of(h: f64, weight: u64) -> f64 {
    // ln(h) < 0 for h in (0, 1), so the score is positive and finite.
    -(weight as f64) / libm::log(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known values, computed independently with Python's hashlib:
    //   d = hashlib.sha256(len(v).to_bytes(4,'big') + v + len(n).to_bytes(4,'big') + n).digest()
    //   x = int.from_bytes(d[:8], 'big'); h = ((x >> 12) + 0.5) / 2**52
    // The test compares `h` exactly: it pins the hash, not just its shape.
    #[test]
    fn unit_hash_matches_known_values() {
        for (video, node, expected) in KNOWN_HASHES {
            assert_eq!(
                unit_hash(video, node),
                *expected,
                "video {video} node {node}"
            );
        }
    }

    // Scores from Python's math.log, which agrees with libm to within an
    // ulp or two: compared with a relative tolerance far below any gap
    // between the scores that decide the orders below.
    #[test]
    fn score_matches_known_values() {
        for (video, node, weight, expected) in KNOWN_SCORES {
            let got = score(video, node, *weight);
            assert!(
                ((got - expected) / expected).abs() < 1e-12,
                "video {video} node {node} weight {weight}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn order_matches_known_orders() {
        let nodes = |specs: &[(&str, u64)]| {
            let nodes = specs
                .iter()
                .map(|(id, weight)| {
                    Node::new(crate::NodeId::new(*id).unwrap(), *weight, 0).unwrap()
                })
                .collect();
            Cluster::new(nodes).unwrap()
        };
        for (video, specs, expected) in KNOWN_ORDERS {
            let cluster = nodes(specs);
            let video = VideoId::new(*video).unwrap();
            let got: Vec<&str> = order(&video, &cluster)
                .iter()
                .map(|node| node.id().as_str())
                .collect();
            assert_eq!(got, *expected, "video {video}");
        }
    }

    const KNOWN_HASHES: &[(&str, &str, f64)] = &[
        ("v1", "edge-a", 0.6921941197687823),
        ("v1", "edge-b", 0.12661090880904624),
        ("big-buck-bunny", "10.0.0.2:7280", 0.049868376556960414),
        ("x", "y", 0.07540540782756644),
        ("sintel_4k", "edge-a", 0.4346441876446471),
    ];
    const KNOWN_SCORES: &[(&str, &str, u64, f64)] = &[
        ("v1", "edge-a", 1, 2.7182123610311804),
        ("v1", "edge-b", 1, 0.48387800610897763),
        (
            "big-buck-bunny",
            "10.0.0.2:7280",
            10000000000,
            3335147416.227716,
        ),
        ("sintel_4k", "edge-a", 3, 3.600457076402478),
    ];
    /// A video, its nodes with their weights, and their order.
    type KnownOrder = (
        &'static str,
        &'static [(&'static str, u64)],
        &'static [&'static str],
    );
    const KNOWN_ORDERS: &[KnownOrder] = &[
        (
            "v1",
            &[("edge-a", 1), ("edge-b", 1), ("edge-c", 1)],
            &["edge-a", "edge-b", "edge-c"],
        ),
        (
            "big-buck-bunny",
            &[
                ("edge-a", 1),
                ("edge-b", 1),
                ("edge-c", 1),
                ("edge-d", 1),
                ("edge-e", 1),
            ],
            &["edge-d", "edge-a", "edge-b", "edge-c", "edge-e"],
        ),
        (
            "sintel_4k",
            &[("edge-a", 10), ("edge-b", 1), ("edge-c", 1)],
            &["edge-a", "edge-b", "edge-c"],
        ),
        (
            "tears-of-steel",
            &[
                ("n1", 40000000000),
                ("n2", 10000000000),
                ("n3", 25000000000),
                ("n4", 10000000000),
            ],
            &["n3", "n1", "n2", "n4"],
        ),
    ];
}
