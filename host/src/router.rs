//! The router: built once from the validated config, it maps a topic to the
//! handlers that want it (by name or `^regex`). A topic is resolved when one
//! of its partitions is assigned, so no lookup happens per message; a topic
//! no handler takes routes to nothing and its messages are acknowledged at
//! once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::TopicSelector;

/// Handler indexes a topic goes to, shared by every message of the topic.
pub type Route = Arc<[usize]>;

/// Topic → handlers.
#[derive(Debug)]
pub struct Router {
    /// Per handler (by index), the topics it takes.
    selectors: Vec<Vec<TopicSelector>>,
    /// Topics resolved so far.
    resolved: Mutex<HashMap<Arc<str>, Route>>,
}

impl Router {
    /// A router over handlers given as their topic selectors, in handler
    /// order.
    pub fn new(selectors: Vec<Vec<TopicSelector>>) -> Self {
        Router {
            selectors,
            resolved: Mutex::default(),
        }
    }

    /// The handlers `topic` goes to, in handler order (empty when none).
    pub fn route(&self, topic: &Arc<str>) -> Route {
        let mut resolved = self.resolved.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(resolved.entry(Arc::clone(topic)).or_insert_with(|| {
            self.selectors
                .iter()
                .enumerate()
                .filter(|(_, topics)| topics.iter().any(|s| s.matches(topic)))
                .map(|(index, _)| index)
                .collect()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> TopicSelector {
        TopicSelector::Name(n.to_owned())
    }

    #[test]
    fn routes_names_and_patterns_in_handler_order() {
        let pattern = TopicSelector::Pattern(regex_lite::Regex::new("^gcn\\..*").unwrap());
        let router = Router::new(vec![
            vec![name("gcn.a")],
            vec![pattern],
            vec![name("other")],
        ]);
        assert_eq!(&*router.route(&"gcn.a".into()), &[0, 1]);
        assert_eq!(&*router.route(&"gcn.b".into()), &[1]);
        assert!(router.route(&"nobody".into()).is_empty());
        let again = router.route(&"gcn.a".into());
        assert!(Arc::ptr_eq(&again, &router.route(&"gcn.a".into())));
    }
}
