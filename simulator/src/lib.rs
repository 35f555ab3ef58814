//! Caidan simulator: many agents, shoppers and faults in one run. Not built out yet.
