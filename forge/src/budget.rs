//! A suite's budget while it runs (`budget: {max_cost_usd}`): the
//! [`Meter`] adds up what the runner's and the judge's calls cost and
//! fires the engine's [`Halt`] once the budget is spent, so no new turn is
//! sent.

use std::sync::{Arc, Mutex};

use crate::engine::Halt;
use crate::usage::Budget;

/// A suite's spending while it runs: the cost so far, and the budget it
/// stops at (firing its [`Halt`]).
#[derive(Debug, Default)]
pub struct Meter {
    spent: Mutex<f64>,
    budget: Option<(f64, Arc<Halt>)>,
}

impl Meter {
    /// A meter stopping the run through `halt` once `budget` is spent.
    pub fn new(budget: Option<Budget>) -> Self {
        Meter {
            spent: Mutex::new(0.0),
            budget: budget.map(|b| (b.max_cost_usd, Arc::new(Halt::new(b.reason())))),
        }
    }

    /// What stops the suite's new turns once the budget is spent.
    pub fn halt(&self) -> Option<Arc<Halt>> {
        self.budget.as_ref().map(|(_, halt)| Arc::clone(halt))
    }

    /// Counts `cost` USD spent; fires the halt once the budget is reached.
    pub fn add(&self, cost: f64) {
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        *spent += cost;
        if let Some((max, halt)) = &self.budget {
            if *spent >= *max {
                halt.fire();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_halts_once_the_budget_is_spent() {
        let meter = Meter::new(Some(Budget { max_cost_usd: 0.01 }));
        let halt = meter.halt().expect("a halt");
        meter.add(0.006);
        assert!(!halt.fired());
        meter.add(0.004);
        assert!(halt.fired());
        assert!(Meter::new(None).halt().is_none());
    }
}
