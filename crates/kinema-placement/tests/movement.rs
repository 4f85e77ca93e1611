//! How videos spread over nodes and move when membership changes, over
//! 20,000 video ids.
//!
//! The ids and nodes are fixed, so these tests are deterministic; the bands
//! are what a good hash must meet: five standard deviations of the binomial
//! count around its expectation (for p = 1/4 over 20,000 ids, ±0.0153; for
//! p = 1/21, ±0.0075). A hash that favoured a node or moved more than the
//! joining or leaving node's share would miss them.

use kinema_core::VideoId;
use kinema_placement::{Cluster, Node, NodeId, Placement, rendezvous};

const VIDEOS: usize = 20_000;

fn videos() -> Vec<VideoId> {
    (0..VIDEOS)
        .map(|i| VideoId::new(format!("video-{i}")).unwrap())
        .collect()
}

fn node(id: &str, weight: u64) -> Node {
    Node::new(NodeId::new(id).unwrap(), weight, 0).unwrap()
}

fn heads(placement: &Placement, videos: &[VideoId], cluster: &Cluster) -> Vec<NodeId> {
    videos
        .iter()
        .map(|video| placement.order(video, cluster)[0].id().clone())
        .collect()
}

/// Five binomial standard deviations of a fraction with probability `p`.
fn band(p: f64) -> f64 {
    5.0 * (p * (1.0 - p) / VIDEOS as f64).sqrt()
}

/// Every video's score on each of the nodes edge-0 … edge-20, hashed once
/// (hashing dominates, and these tests look at 38 clusters of up to 21
/// nodes): the head of a cluster is then its member of highest score.
/// [`Self::check_against_order`] holds these heads to `Placement::order`.
struct Scores {
    ids: Vec<NodeId>,
    by_video: Vec<Vec<f64>>,
}

impl Scores {
    fn new(videos: &[VideoId], count: usize) -> Self {
        let ids: Vec<NodeId> = (0..count)
            .map(|i| NodeId::new(format!("edge-{i}")).unwrap())
            .collect();
        let by_video = videos
            .iter()
            .map(|video| {
                ids.iter()
                    .map(|id| rendezvous::score(video.as_str(), id.as_str(), 1))
                    .collect()
            })
            .collect();
        Self { ids, by_video }
    }

    /// The members of `members` (indices into the ids) in the order of `video`.
    fn ranked(&self, video: usize, members: &[usize]) -> Vec<usize> {
        let scores = &self.by_video[video];
        let mut ranked = members.to_vec();
        ranked.sort_by(|&a, &b| {
            scores[b]
                .total_cmp(&scores[a])
                .then(self.ids[a].cmp(&self.ids[b]))
        });
        ranked
    }

    fn cluster(&self, members: &[usize]) -> Cluster {
        Cluster::new(
            members
                .iter()
                .map(|&i| node(self.ids[i].as_str(), 1))
                .collect(),
        )
        .unwrap()
    }

    /// Every 50th video: the ranking here is exactly `order`'s.
    fn check_against_order(&self, placement: &Placement, videos: &[VideoId], members: &[usize]) {
        let cluster = self.cluster(members);
        for (index, video) in videos.iter().enumerate().step_by(50) {
            let expected: Vec<&NodeId> = self
                .ranked(index, members)
                .iter()
                .map(|&i| &self.ids[i])
                .collect();
            let got: Vec<&NodeId> = placement
                .order(video, &cluster)
                .iter()
                .map(|node| node.id())
                .collect();
            assert_eq!(got, expected, "video {video}");
        }
    }
}

#[test]
fn adding_one_of_n_nodes_moves_about_one_in_n_videos_all_to_it() {
    let placement = Placement::default();
    let videos = videos();
    let scores = Scores::new(&videos, 21);
    for count in 3..=20usize {
        let before: Vec<usize> = (0..count).collect();
        let after: Vec<usize> = (0..=count).collect();
        scores.check_against_order(&placement, &videos, &after);
        let mut moved = 0usize;
        for video in 0..VIDEOS {
            let old = scores.ranked(video, &before)[0];
            let new = scores.ranked(video, &after)[0];
            if old != new {
                moved += 1;
                assert_eq!(new, count, "a video moved between two old nodes");
            }
        }
        let fraction = moved as f64 / VIDEOS as f64;
        let expected = 1.0 / (count + 1) as f64;
        assert!(
            (fraction - expected).abs() <= band(expected),
            "{count} → {} nodes: moved {fraction:.4}, expected {expected:.4} ± {:.4}",
            count + 1,
            band(expected)
        );
    }
}

#[test]
fn removing_one_of_n_nodes_moves_about_one_in_n_videos_all_from_it() {
    let placement = Placement::default();
    let videos = videos();
    let scores = Scores::new(&videos, 20);
    for count in 3..=20usize {
        let before: Vec<usize> = (0..count).collect();
        // Remove one from the middle, not the newest.
        let removed = count / 2;
        let after: Vec<usize> = before.iter().copied().filter(|&i| i != removed).collect();
        scores.check_against_order(&placement, &videos, &before);
        scores.check_against_order(&placement, &videos, &after);
        let mut moved = 0usize;
        for video in 0..VIDEOS {
            let old = scores.ranked(video, &before);
            let new = scores.ranked(video, &after)[0];
            if old[0] != new {
                moved += 1;
                assert_eq!(old[0], removed, "a video left a node that stayed");
                assert_eq!(old[1], new, "a moved video skipped its second node");
            }
        }
        let fraction = moved as f64 / VIDEOS as f64;
        let expected = 1.0 / count as f64;
        assert!(
            (fraction - expected).abs() <= band(expected),
            "{count} → {} nodes: moved {fraction:.4}, expected {expected:.4} ± {:.4}",
            count - 1,
            band(expected)
        );
    }
}

// Weights 1, 2, 1, 4 (and the same in bits/s, 10 Gbit/s units): each node
// leads its weight's share of the videos, 1/8, 2/8, 1/8 and 4/8, each
// within five standard deviations (±0.0117 at 1/8, ±0.0153 at 1/4,
// ±0.0177 at 1/2). So the node of twice the weight leads between 1.6 and
// 2.5 times as many videos as a node of weight 1.
#[test]
fn nodes_lead_videos_in_proportion_to_their_weight() {
    let placement = Placement::default();
    let videos = videos();
    for unit in [1u64, 10_000_000_000] {
        let weights = [
            ("edge-a", 1u64),
            ("edge-b", 2),
            ("edge-c", 1),
            ("edge-d", 4),
        ];
        let cluster = Cluster::new(
            weights
                .iter()
                .map(|(id, weight)| node(id, weight * unit))
                .collect(),
        )
        .unwrap();
        let heads = heads(&placement, &videos, &cluster);
        for (id, weight) in weights {
            let led = heads.iter().filter(|head| head.as_str() == id).count();
            let share = led as f64 / VIDEOS as f64;
            let expected = weight as f64 / 8.0;
            assert!(
                (share - expected).abs() <= band(expected),
                "unit {unit}: {id} of weight {weight} leads {share:.4}, expected {expected:.4} ± {:.4}",
                band(expected)
            );
        }
    }
}

// Every position, not only the head, is spread by weight: with four equal
// nodes each is second in the order of about a quarter of the videos.
#[test]
fn every_position_of_the_order_is_spread_evenly() {
    let placement = Placement::default();
    let videos = videos();
    let ids: Vec<String> = (0..4).map(|i| format!("edge-{i}")).collect();
    let cluster = Cluster::new(ids.iter().map(|id| node(id, 1)).collect()).unwrap();
    let mut counts = [[0usize; 4]; 4];
    for video in &videos {
        for (position, node) in placement.order(video, &cluster).iter().enumerate() {
            let index = ids.iter().position(|id| id == node.id().as_str()).unwrap();
            counts[position][index] += 1;
        }
    }
    for (position, row) in counts.iter().enumerate() {
        for (id, count) in ids.iter().zip(row) {
            let share = *count as f64 / VIDEOS as f64;
            assert!(
                (share - 0.25).abs() <= band(0.25),
                "{id} at position {position}: {share:.4}, expected 0.25 ± {:.4}",
                band(0.25)
            );
        }
    }
}
