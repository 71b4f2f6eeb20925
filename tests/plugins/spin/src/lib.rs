//! Loops in `on_request`: forever without config (deadline test), or `iterations` times and
//! then answers `200 spun N` (the twin that stays within the deadline).

use switchyard_sdk::{Decision, LocalResponse, Plugin, Request, export_plugin};

struct Spin {
    iterations: Option<u64>,
}

impl Plugin for Spin {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        Ok(Spin {
            iterations: config.get("iterations").and_then(|v| v.as_u64()),
        })
    }

    fn on_request(&self, req: &Request) -> Decision {
        let mut x = req.path().len() as u64;
        match self.iterations {
            Some(n) => {
                for i in 0..n {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                }
                Decision::Local(LocalResponse::new(200).text(format!("spun {n} {}", x % 2)))
            }
            None => loop {
                x = std::hint::black_box(x.wrapping_add(1));
            },
        }
    }
}

export_plugin!(Spin);
