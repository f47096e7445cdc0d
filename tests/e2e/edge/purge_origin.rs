//! The real origin purging through the edge (written next).
