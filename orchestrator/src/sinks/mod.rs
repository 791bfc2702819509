//! Where per-second points go besides the results files (InfluxDB v2 line protocol).
