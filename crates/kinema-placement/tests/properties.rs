//! Property tests: what must hold for every cluster, video and sequence of
//! assignments, not only for the examples the unit tests pick.
//!
//! Expected values are computed here from the definitions (bounds as exact
//! integer inequalities, k as a ceiling), not by the crate's own helpers.

use std::collections::BTreeSet;
use std::time::Duration;

use kinema_core::VideoId;
use kinema_placement::{BalanceFactor, Cluster, Config, Node, NodeId, Placement, RateMeter};
use proptest::prelude::*;

fn video_id() -> impl Strategy<Value = VideoId> {
    "[A-Za-z0-9_-]{1,64}".prop_map(|id| VideoId::new(id).unwrap())
}

/// 1 to `max` nodes with distinct ids and weights in 1..=1000.
fn nodes(max: usize) -> impl Strategy<Value = Vec<(String, u64)>> {
    proptest::collection::btree_map("[!-~]{1,16}", 1u64..=1000, 1..=max)
        .prop_map(|nodes| nodes.into_iter().collect())
}

fn cluster(nodes: &[(String, u64)], loads: &[u64]) -> Cluster {
    let nodes = nodes
        .iter()
        .enumerate()
        .map(|(index, (id, weight))| {
            let load = loads.get(index).copied().unwrap_or(0);
            Node::new(NodeId::new(id.clone()).unwrap(), *weight, load).unwrap()
        })
        .collect();
    Cluster::new(nodes).unwrap()
}

fn ids<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<String> {
    nodes
        .into_iter()
        .map(|node| node.id().to_string())
        .collect()
}

/// One step of a sequence: place an assignment of a video (by index into a
/// small catalogue, at a rate, on the `pick`-th serving node), or end one.
#[derive(Debug, Clone)]
enum Step {
    Assign {
        video: usize,
        rate: f64,
        pick: usize,
    },
    Release {
        node: usize,
    },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => (0usize..20, 0.0f64..12.0, 0usize..16)
            .prop_map(|(video, rate, pick)| Step::Assign { video, rate, pick }),
        1 => (0usize..16).prop_map(|node| Step::Release { node }),
    ];
    proptest::collection::vec(step, 1..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn order_is_deterministic_and_independent_of_listing(
        video in video_id(),
        nodes in nodes(24),
        shuffle_seed in any::<u64>(),
    ) {
        let placement = Placement::default();
        let sorted = cluster(&nodes, &[]);
        let mut shuffled = nodes.clone();
        // A permutation from the seed, so the listing differs from the sorted one.
        let len = shuffled.len();
        let mut state = shuffle_seed;
        for index in (1..len).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(index, (state >> 33) as usize % (index + 1));
        }
        let order = ids(placement.order(&video, &sorted));
        prop_assert_eq!(&order, &ids(placement.order(&video, &cluster(&shuffled, &[]))));
        prop_assert_eq!(&order, &ids(placement.order(&video, &sorted.clone())));
        // Every node exactly once.
        let listed: BTreeSet<&String> = nodes.iter().map(|(id, _)| id).collect();
        let ordered: BTreeSet<&String> = order.iter().collect();
        prop_assert_eq!(order.len(), nodes.len());
        prop_assert_eq!(listed, ordered);
    }

    #[test]
    fn removing_a_node_keeps_the_others_in_their_order(
        video in video_id(),
        nodes in nodes(24),
        removed in any::<prop::sample::Index>(),
    ) {
        prop_assume!(nodes.len() >= 2);
        let placement = Placement::default();
        let removed = removed.index(nodes.len());
        let removed_id = nodes[removed].0.clone();
        let mut rest = nodes.clone();
        rest.remove(removed);
        let mut expected = ids(placement.order(&video, &cluster(&nodes, &[])));
        expected.retain(|id| *id != removed_id);
        prop_assert_eq!(ids(placement.order(&video, &cluster(&rest, &[]))), expected);
    }

    // With any weights: a node joining takes videos only for itself, and a
    // node whose capacity grows takes videos only for itself (read the other
    // way: one whose capacity shrinks only gives its own away).
    #[test]
    fn joining_or_growing_moves_videos_only_to_that_node(
        video in video_id(),
        nodes in nodes(16),
        joining_weight in 1u64..=1000,
        grown in any::<prop::sample::Index>(),
        growth in 2u64..=8,
    ) {
        let placement = Placement::default();
        let before = ids(placement.order(&video, &cluster(&nodes, &[])));
        let joining = "joining-node".to_string();
        prop_assume!(!nodes.iter().any(|(id, _)| *id == joining));
        let mut joined = nodes.clone();
        joined.push((joining.clone(), joining_weight));
        let head = ids(placement.order(&video, &cluster(&joined, &[])))[0].clone();
        prop_assert!(head == before[0] || head == joining, "moved to {}", head);

        let grown = grown.index(nodes.len());
        let grown_id = nodes[grown].0.clone();
        let mut larger = nodes.clone();
        larger[grown].1 *= growth;
        let head = ids(placement.order(&video, &cluster(&larger, &[])))[0].clone();
        prop_assert!(head == before[0] || head == grown_id, "moved to {}", head);
    }

    // Scaling every weight by a power of two scales every score exactly:
    // the unit of capacity (bits/s or Gbit/s) cannot change an order.
    #[test]
    fn the_unit_of_weight_does_not_change_the_order(
        video in video_id(),
        nodes in nodes(24),
        shift in 0u32..38,
    ) {
        let placement = Placement::default();
        let scaled: Vec<(String, u64)> =
            nodes.iter().map(|(id, weight)| (id.clone(), weight << shift)).collect();
        prop_assert_eq!(
            ids(placement.order(&video, &cluster(&nodes, &[]))),
            ids(placement.order(&video, &cluster(&scaled, &[])))
        );
    }

    // For any sequence of assignments and releases: the serving nodes are
    // exactly the first k nodes of the order below their bound, the nodes
    // passed over are exactly those at it, and a node that takes the
    // assignment ends within ⌈c × (L + 1) × w / W⌉.
    #[test]
    fn bounded_load_is_never_exceeded_and_overflow_follows_the_order(
        nodes in nodes(8),
        thousandths in 1001u32..3000,
        per_node_rate in 0.5f64..4.0,
        steps in steps(),
    ) {
        let config = Config::new(BalanceFactor::from_thousandths(thousandths).unwrap(), per_node_rate).unwrap();
        let placement = Placement::new(config);
        let catalogue: Vec<VideoId> =
            (0..20).map(|i| VideoId::new(format!("v{i}")).unwrap()).collect();
        let total_weight: u128 = nodes.iter().map(|(_, weight)| u128::from(*weight)).sum();
        let c = u128::from(thousandths);
        let mut loads = vec![0u64; nodes.len()];
        for step in steps {
            match step {
                Step::Release { node } => {
                    let node = node % nodes.len();
                    loads[node] = loads[node].saturating_sub(1);
                }
                Step::Assign { video, rate, pick } => {
                    let cluster = cluster(&nodes, &loads);
                    let video = &catalogue[video];
                    let total_load: u128 = loads.iter().map(|load| u128::from(*load)).sum();
                    let load_of = |id: &str| {
                        let index = nodes.iter().position(|(node, _)| node == id).unwrap();
                        (index, u128::from(loads[index]), u128::from(nodes[index].1))
                    };
                    // load < ⌈x⌉ ⟺ load < x for an integer load: room means
                    // load × 1000 × W < c × (L + 1) × w.
                    let has_room = |id: &str| {
                        let (_, load, weight) = load_of(id);
                        load * 1000 * total_weight < c * (total_load + 1) * weight
                    };
                    let wanted = ((rate / per_node_rate).ceil() as usize).clamp(1, nodes.len());
                    let order = ids(placement.order(video, &cluster));
                    let expected_serve: Vec<String> =
                        order.iter().filter(|id| has_room(id)).take(wanted).cloned().collect();
                    let choice = placement.choose(video, &cluster, rate);
                    prop_assert_eq!(choice.replicas, wanted);
                    prop_assert!(!choice.serve.is_empty(), "no node has room");
                    prop_assert_eq!(ids(choice.serve.iter().copied()), expected_serve.clone());
                    // The walk stops at the k-th node with room, or goes
                    // through the whole order when fewer have room.
                    let walked = if expected_serve.len() == wanted {
                        let last = &expected_serve[expected_serve.len() - 1];
                        order.iter().position(|id| id == last).unwrap() + 1
                    } else {
                        order.len()
                    };
                    let expected_full: Vec<String> =
                        order[..walked].iter().filter(|id| !has_room(id)).cloned().collect();
                    prop_assert_eq!(ids(choice.full.iter().copied()), expected_full);

                    let chosen = choice.serve[pick % choice.serve.len()].id().to_string();
                    let (index, _, weight) = load_of(&chosen);
                    loads[index] += 1;
                    let new_load = u128::from(loads[index]);
                    let numerator = c * (total_load + 1) * weight;
                    let denominator = 1000 * total_weight;
                    let bound = numerator.div_ceil(denominator);
                    prop_assert!(
                        new_load <= bound,
                        "{} took load {} above its bound {}", chosen, new_load, bound
                    );
                }
            }
        }
    }

    #[test]
    fn replicas_grow_with_rate_and_a_cold_video_has_one(
        video in video_id(),
        nodes in nodes(12),
        per_node_rate in 0.1f64..10.0,
        low in 0.0f64..100.0,
        extra in 0.0f64..100.0,
    ) {
        let placement = Placement::new(Config::new(BalanceFactor::default(), per_node_rate).unwrap());
        let cluster = cluster(&nodes, &[]);
        prop_assert_eq!(placement.choose(&video, &cluster, 0.0).replicas, 1);
        prop_assert_eq!(placement.choose(&video, &cluster, per_node_rate).replicas, 1);
        let k_low = placement.choose(&video, &cluster, low).replicas;
        let k_high = placement.choose(&video, &cluster, low + extra).replicas;
        prop_assert!(k_low <= k_high);
        prop_assert!(k_high <= nodes.len());
        // Idle nodes all have room: the first k of the order serve.
        let order = ids(placement.order(&video, &cluster));
        let choice = placement.choose(&video, &cluster, low + extra);
        prop_assert_eq!(ids(choice.serve.iter().copied()), order[..k_high].to_vec());
    }

    // Whatever came before, once events stop the rate halves every half-life.
    #[test]
    fn the_rate_halves_every_half_life_once_events_stop(
        half_life_ms in 1u64..100_000,
        events in proptest::collection::vec(0u64..1_000_000, 1..50),
        wait_half_lives in 0.0f64..200.0,
    ) {
        let half_life = Duration::from_millis(half_life_ms);
        let mut meter = RateMeter::new(half_life).unwrap();
        let mut last = Duration::ZERO;
        for at in &events {
            meter.observe(Duration::from_millis(*at));
            last = last.max(Duration::from_millis(*at));
        }
        // Up to 200 half-lives: the rate stays a normal float (2^-200 of it).
        let then = last + half_life.mul_f64(wait_half_lives);
        let now = meter.rate(then);
        let later = meter.rate(then + half_life);
        prop_assert!(now > 0.0);
        prop_assert!((later * 2.0 - now).abs() <= 1e-9 * now, "{} then {}", now, later);
    }
}
