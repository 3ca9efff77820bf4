//! Who is who in a run: the ids of every user, course and pair, and when each student sends.
//!
//! Everything is derived from `--prefix`, `--shard`, `--pairs` and `--students-per-tutor`, so
//! several processes with the same prefix and different shards never touch each other's users,
//! and a repeated run with the same prefix and shard reuses (idempotently) the same fixtures.
//!
//! Layout: tutor `t` owns course `t` (its only tutor) and chats with students
//! `t*K .. t*K+K-1`, each enrolled in that course. One course per tutor keeps every course
//! small, as on a real platform, instead of one course with thousands of tutors.

use std::time::Duration;

/// Longest `--prefix`: leaves room for the shard, the role letter and the index within the
/// contract's 64-character user id.
pub const MAX_PREFIX: usize = 32;

#[derive(Debug, Clone)]
pub struct Plan {
    /// Namespace for every id of the run.
    pub prefix: String,
    /// Distinguishes processes of one multi-process run.
    pub shard: u32,
    /// Number of students (`--pairs`), each with one chat.
    pub students: usize,
    /// Students per tutor (`--students-per-tutor`).
    pub per_tutor: usize,
}

impl Plan {
    pub fn tutors(&self) -> usize {
        self.students.div_ceil(self.per_tutor)
    }

    pub fn sockets(&self) -> usize {
        self.students + self.tutors()
    }

    pub fn student_id(&self, i: usize) -> String {
        format!("{}-{}-s{i}", self.prefix, self.shard)
    }

    pub fn tutor_id(&self, t: usize) -> String {
        format!("{}-{}-t{t}", self.prefix, self.shard)
    }

    pub fn course_id(&self, t: usize) -> String {
        format!("{}-{}-c{t}", self.prefix, self.shard)
    }

    /// The admin identity that creates the fixtures (a token only; it needs no user record).
    pub fn admin_id(&self) -> String {
        format!("{}-{}-admin", self.prefix, self.shard)
    }

    /// The tutor (and course) of student `i`.
    pub fn tutor_of(&self, i: usize) -> usize {
        i / self.per_tutor
    }

    /// Which of `nodes` servers student `i` connects to: they take turns.
    pub fn student_node(&self, i: usize, nodes: usize) -> usize {
        i % nodes
    }

    /// Which of `nodes` servers tutor `t` connects to: the one after its first student's, so with
    /// one student per tutor and two or more nodes the two sides of every chat are on different
    /// nodes and each delivery goes through the cluster's bus. (With several students per tutor
    /// some of them share the tutor's node.)
    pub fn tutor_node(&self, t: usize, nodes: usize) -> usize {
        (t * self.per_tutor + 1) % nodes
    }
}

/// Whether `prefix` can start a contract user id (`[A-Za-z0-9_-]`, 1..=[`MAX_PREFIX`]).
pub fn valid_prefix(prefix: &str) -> bool {
    (1..=MAX_PREFIX).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Sending schedule of one student: every `period`, starting `offset` after the common start,
/// so that `students` students sending at `rate` messages/s in total are spread evenly over
/// time instead of all firing on the same tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub offset: Duration,
    pub period: Duration,
}

pub fn schedule(student: usize, students: usize, rate: f64) -> Schedule {
    let period = students as f64 / rate;
    Schedule {
        offset: Duration::from_secs_f64(period * student as f64 / students as f64),
        period: Duration::from_secs_f64(period),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(students: usize, per_tutor: usize) -> Plan {
        Plan { prefix: "run1".into(), shard: 3, students, per_tutor }
    }

    #[test]
    fn ids_are_namespaced_by_prefix_and_shard() {
        let p = plan(4, 1);
        assert_eq!(p.student_id(0), "run1-3-s0");
        assert_eq!(p.tutor_id(2), "run1-3-t2");
        assert_eq!(p.course_id(2), "run1-3-c2");
        assert_eq!(p.admin_id(), "run1-3-admin");
    }

    #[test]
    fn ids_fit_the_contract_at_the_largest_prefix_and_shard() {
        let p = Plan { prefix: "x".repeat(MAX_PREFIX), shard: u32::MAX, students: 1, per_tutor: 1 };
        assert!(p.student_id(99_999_999).len() <= 64);
        assert!(p.admin_id().len() <= 64);
    }

    #[test]
    fn each_pair_is_split_across_nodes() {
        let p = plan(6, 1);
        for i in 0..6 {
            assert_eq!(p.student_node(i, 2), i % 2);
            assert_eq!(p.tutor_node(p.tutor_of(i), 2), (i + 1) % 2);
            assert_ne!(p.student_node(i, 3), p.tutor_node(p.tutor_of(i), 3));
        }
        // One node: everything on it.
        assert!((0..6).all(|i| p.student_node(i, 1) == 0 && p.tutor_node(i, 1) == 0));
        // Several students per tutor: the tutor follows its first student.
        let shared = plan(4, 2);
        assert_eq!((0..2).map(|t| shared.tutor_node(t, 2)).collect::<Vec<_>>(), vec![1, 1]);
        assert_eq!((0..4).map(|i| shared.student_node(i, 2)).collect::<Vec<_>>(), vec![0, 1, 0, 1]);
    }

    #[test]
    fn students_are_shared_out_among_tutors() {
        let p = plan(5, 2);
        assert_eq!(p.tutors(), 3);
        assert_eq!(p.sockets(), 8);
        assert_eq!((0..5).map(|i| p.tutor_of(i)).collect::<Vec<_>>(), vec![0, 0, 1, 1, 2]);
        assert_eq!(plan(3, 1).sockets(), 6);
    }

    #[test]
    fn prefix_must_be_a_valid_id_start() {
        assert!(valid_prefix("lt_a-9"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("a b"));
        assert!(!valid_prefix("a.b"));
        assert!(!valid_prefix(&"x".repeat(MAX_PREFIX + 1)));
    }

    #[test]
    fn schedule_spreads_students_over_one_period() {
        // 4 students, 8 msg/s in total: each sends every 0.5 s, offsets 0, 0.125, 0.25, 0.375.
        let s = schedule(1, 4, 8.0);
        assert_eq!(s.period, Duration::from_millis(500));
        assert_eq!(s.offset, Duration::from_millis(125));
        assert_eq!(schedule(0, 4, 8.0).offset, Duration::ZERO);
        assert!(schedule(3, 4, 8.0).offset < s.period);
    }
}
