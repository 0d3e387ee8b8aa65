//! Pure helpers of the benchmark: statistics, formatting of table cells, and parsers for what
//! the system tools print. Everything here is unit-tested; nothing here runs a process.

/// The median of `values` (the mean of the two middle ones for an even count); `None` when
/// empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// A wall time for the table: milliseconds below 10 s, to be comparable across rows.
pub fn seconds(s: f64) -> String {
    if s < 0.001 {
        format!("{:.2} ms", s * 1000.0)
    } else if s < 10.0 {
        format!("{:.3} s", s)
    } else {
        format!("{:.1} s", s)
    }
}

/// `peer / ocikit` as a speed-up factor: `3.21x`. Empty or zero times give `—`.
pub fn ratio(peer: f64, ocikit: f64) -> String {
    if ocikit <= 0.0 || peer <= 0.0 || !ocikit.is_finite() || !peer.is_finite() {
        return "—".to_string();
    }
    let r = peer / ocikit;
    if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 10.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.2}x")
    }
}

/// A peak RSS given in KiB, as MiB: `12.3 MiB`.
pub fn rss(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A byte count for humans, in decimal units as the sizes of the generated images are given:
/// `750.0 MB`, `1.20 GB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const K: f64 = 1000.0;
    let f = n as f64;
    if f < K {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} kB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MB", f / (K * K))
    } else {
        format!("{:.2} GB", f / (K * K * K))
    }
}

/// A count with thousands separators: `10,000`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Parse a size such as `750M`, `1.2G`, `64KiB`, `300MB` or `4096` into bytes. Decimal
/// suffixes (`k`, `M`, `G`, with or without `B`) are powers of 1000, binary ones (`KiB`, `MiB`,
/// `GiB`) powers of 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (expected e.g. `750M` or `1.2GiB`)"))?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "k" | "K" | "kB" | "KB" => 1e3,
        "M" | "MB" => 1e6,
        "G" | "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("`{s}` has an unknown unit `{other}`")),
    };
    let n = value * mult;
    if !n.is_finite() || n < 0.0 || n > u64::MAX as f64 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(n.round() as u64)
}

/// The peak RSS in KiB from what `/usr/bin/time -f %M -o FILE` wrote. GNU time puts a
/// "Command exited with non-zero status N" line (or "Command terminated by signal N") before
/// the value when the command failed, so the value is the last non-empty line.
pub fn parse_time_maxrss(out: &str) -> Option<u64> {
    out.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .and_then(|l| l.parse().ok())
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => Some(value * 1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// The first `model name` from `/proc/cpuinfo` (x86), else `Model`/`CPU part` lines (arm).
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "cpu model", "CPU part"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
            })
        })
}

/// The value of `--size-scale`: a factor (`0.02`), or the size image A should have (`15M`),
/// which is divided by its full size `full`. The result must be in (0, 10].
pub fn parse_scale(s: &str, full: u64) -> Result<f64, String> {
    let t = s.trim();
    let v = if t.ends_with(|c: char| c.is_ascii_alphabetic()) {
        parse_size(t)? as f64 / full as f64
    } else {
        t.parse::<f64>()
            .map_err(|_| format!("`{s}` is neither a factor (`0.02`) nor a size (`15M`)"))?
    };
    if !(v > 0.0 && v <= 10.0) {
        return Err(format!("`{s}` is out of range (a factor in (0, 10])"));
    }
    Ok(v)
}

/// Assign jobs of the given sizes to `workers` queues, largest first, each to the queue with
/// the least work so far (longest-processing-time scheduling). Returns job indices per worker.
pub fn lpt_schedule(sizes: &[u64], workers: usize) -> Vec<Vec<usize>> {
    let workers = workers.max(1);
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut queues = vec![Vec::new(); workers];
    let mut load = vec![0u64; workers];
    for i in order {
        let w = (0..workers).min_by_key(|&w| (load[w], w)).unwrap_or(0);
        load[w] += sizes[i];
        queues[w].push(i);
    }
    queues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[2.0]), Some(2.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0, 0.5, 9.0, 1.5, 7.0]), Some(5.0));
    }

    #[test]
    fn ratio_cells() {
        assert_eq!(ratio(3.0, 1.0), "3.00x");
        assert_eq!(ratio(1.0, 3.0), "0.33x");
        assert_eq!(ratio(12.34, 1.0), "12.3x");
        assert_eq!(ratio(250.0, 2.0), "125x");
        assert_eq!(ratio(1.0, 0.0), "—");
        assert_eq!(ratio(0.0, 1.0), "—");
        assert_eq!(ratio(f64::NAN, 1.0), "—");
    }

    #[test]
    fn time_cells() {
        assert_eq!(seconds(0.0004), "0.40 ms");
        assert_eq!(seconds(0.0123), "0.012 s");
        assert_eq!(seconds(1.2345), "1.234 s");
        assert_eq!(seconds(12.34), "12.3 s");
    }

    #[test]
    fn size_cells() {
        assert_eq!(rss(65536), "64.0 MiB");
        assert_eq!(rss(1536), "1.5 MiB");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1500), "1.5 kB");
        assert_eq!(bytes(750_000_000), "750.0 MB");
        assert_eq!(bytes(1_200_000_000), "1.20 GB");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(50_000), "50,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("750M"), Ok(750_000_000));
        assert_eq!(parse_size("300MB"), Ok(300_000_000));
        assert_eq!(parse_size("1.2G"), Ok(1_200_000_000));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("64MiB"), Ok(67_108_864));
        assert_eq!(parse_size(" 2GiB "), Ok(2_147_483_648));
        assert_eq!(parse_size("1.5k"), Ok(1500));
        assert_eq!(
            parse_size("12X"),
            Err("`12X` has an unknown unit `X`".to_string())
        );
        assert_eq!(
            parse_size("MB"),
            Err("`MB` is not a size (expected e.g. `750M` or `1.2GiB`)".to_string())
        );
    }

    #[test]
    fn scale_parse() {
        assert_eq!(parse_scale("0.02", 750_000_000), Ok(0.02));
        assert_eq!(parse_scale("1", 750_000_000), Ok(1.0));
        assert_eq!(parse_scale("15M", 750_000_000), Ok(0.02));
        assert_eq!(parse_scale("1.5G", 750_000_000), Ok(2.0));
        assert_eq!(
            parse_scale("0", 750_000_000),
            Err("`0` is out of range (a factor in (0, 10])".to_string())
        );
        assert_eq!(
            parse_scale("big", 750_000_000),
            Err("`big` is not a size (expected e.g. `750M` or `1.2GiB`)".to_string())
        );
        assert_eq!(
            parse_scale("1,5", 750_000_000),
            Err("`1,5` is neither a factor (`0.02`) nor a size (`15M`)".to_string())
        );
    }

    #[test]
    fn time_output() {
        assert_eq!(parse_time_maxrss("12345\n"), Some(12345));
        assert_eq!(
            parse_time_maxrss("Command exited with non-zero status 1\n8040\n"),
            Some(8040)
        );
        assert_eq!(parse_time_maxrss("Command terminated by signal 9\n"), None);
        assert_eq!(parse_time_maxrss(""), None);
    }

    #[test]
    fn proc_files() {
        let meminfo = "MemTotal:       24684012 kB\nMemFree:        22420000 kB\n";
        assert_eq!(parse_meminfo_total(meminfo), Some(24_684_012 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(
            parse_cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(
            parse_cpu_model("processor : 0\nCPU part : 0xd0c\n").as_deref(),
            Some("0xd0c")
        );
        assert_eq!(parse_cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn lpt() {
        // One blob of 300 and two smaller ones on two cores: the big one runs alone.
        assert_eq!(lpt_schedule(&[80, 300, 120], 2), vec![vec![1], vec![2, 0]]);
        assert_eq!(lpt_schedule(&[5, 5, 5, 5], 2), vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(lpt_schedule(&[7], 4), vec![vec![0], vec![], vec![], vec![]]);
        assert_eq!(lpt_schedule(&[1, 2], 0), vec![vec![1, 0]]);
    }
}
