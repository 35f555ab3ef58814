//! Everything that crosses the wire between touchpoints and the cloud. Not built out yet.
