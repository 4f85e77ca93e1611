//! A quick look at what one `order` call costs for 3, 10 and 100 nodes:
//! `cargo run --release -p kinema-placement --example order_timing`.
//! It prints figures for a person to read; nothing checks them.

use std::hint::black_box;
use std::time::Instant;

use kinema_core::VideoId;
use kinema_placement::{Cluster, Node, NodeId, Placement};

fn main() {
    let placement = Placement::default();
    let videos: Vec<VideoId> = (0..10_000)
        .map(|i| VideoId::new(format!("video-{i}")).expect("a valid id"))
        .collect();
    for count in [3usize, 10, 100] {
        let nodes = (0..count)
            .map(|i| {
                let id = NodeId::new(format!("edge-{i}.example.net")).expect("a valid id");
                Node::new(id, 10_000_000_000, 0).expect("a valid node")
            })
            .collect();
        let cluster = Cluster::new(nodes).expect("a valid cluster");
        let rounds = 100_000 / count.min(100);
        let started = Instant::now();
        for round in 0..rounds {
            let video = &videos[round % videos.len()];
            black_box(placement.order(black_box(video), &cluster));
        }
        let per_call = started.elapsed() / u32::try_from(rounds).expect("few rounds");
        println!("order over {count:>3} nodes: {per_call:?} per call ({rounds} calls)");
    }
}
