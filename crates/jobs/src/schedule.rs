//! The schedules of [`crate::JOBS`]: a deliberately small subset of cron (UTC), so that one
//! string serves both Cloud Scheduler (which takes it verbatim) and `fintrail up`'s local
//! scheduler (which only needs "when did it last fire?").
//!
//! Accepted forms: `* * * * *` (every minute), `*/N * * * *` (every N minutes, N divides 60)
//! and `M H * * *` (daily at H:M). Anything else is refused rather than misread.

use chrono::{DateTime, Duration, Timelike as _, Utc};

/// A parsed schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every `n` minutes, on minutes divisible by `n`.
    EveryMinutes(u32),
    /// Once a day at `hour:minute` UTC.
    Daily {
        /// 0..=23.
        hour: u32,
        /// 0..=59.
        minute: u32,
    },
}

impl Schedule {
    /// Parses one of the accepted forms.
    pub fn parse(cron: &str) -> anyhow::Result<Schedule> {
        let f: Vec<&str> = cron.split_whitespace().collect();
        anyhow::ensure!(
            f.len() == 5 && f[2..] == ["*", "*", "*"],
            "schedule {cron:?}: expected `M H * * *` or `*/N * * * *`"
        );
        match (f[0], f[1]) {
            ("*", "*") => Ok(Schedule::EveryMinutes(1)),
            (m, "*") if m.starts_with("*/") => {
                let n: u32 = m[2..].parse()?;
                anyhow::ensure!((1..=60).contains(&n) && 60 % n == 0, "schedule {cron:?}: N must divide 60");
                Ok(Schedule::EveryMinutes(n))
            }
            (m, h) => {
                let (minute, hour): (u32, u32) = (m.parse()?, h.parse()?);
                anyhow::ensure!(minute < 60 && hour < 24, "schedule {cron:?}: out of range");
                Ok(Schedule::Daily { hour, minute })
            }
        }
    }

    /// The latest fire time at or before `now`.
    pub fn latest_fire(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let minute_start =
            now.with_second(0).and_then(|t| t.with_nanosecond(0)).expect("second 0 of a UTC minute exists");
        match self {
            Schedule::EveryMinutes(n) => minute_start - Duration::minutes(i64::from(now.minute() % n)),
            Schedule::Daily { hour, minute } => {
                let today = minute_start - Duration::minutes(i64::from(now.hour() * 60 + now.minute()))
                    + Duration::minutes(i64::from(hour * 60 + minute));
                if today <= now {
                    today
                } else {
                    today - Duration::days(1)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, s).single().unwrap()
    }

    #[test]
    fn parses_the_accepted_forms_and_refuses_the_rest() {
        assert_eq!(Schedule::parse("* * * * *").unwrap(), Schedule::EveryMinutes(1));
        assert_eq!(Schedule::parse("*/5 * * * *").unwrap(), Schedule::EveryMinutes(5));
        assert_eq!(Schedule::parse("15 2 * * *").unwrap(), Schedule::Daily { hour: 2, minute: 15 });
        for bad in ["*/7 * * * *", "0 0 1 * *", "60 1 * * *", "1 24 * * *", "x", "* * * *", "0 0 * * 1"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn latest_fire_is_at_or_before_now() {
        let every5 = Schedule::EveryMinutes(5);
        assert_eq!(every5.latest_fire(at(10, 7, 30)), at(10, 5, 0));
        assert_eq!(every5.latest_fire(at(10, 5, 0)), at(10, 5, 0));
        let daily = Schedule::Daily { hour: 2, minute: 15 };
        assert_eq!(daily.latest_fire(at(2, 15, 0)), at(2, 15, 0));
        assert_eq!(daily.latest_fire(at(12, 0, 0)), at(2, 15, 0));
        assert_eq!(daily.latest_fire(at(2, 14, 59)), at(2, 15, 0) - Duration::days(1));
    }
}
