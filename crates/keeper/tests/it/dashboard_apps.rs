//! Dashboard pages for apps, connections and meetings (being built).
