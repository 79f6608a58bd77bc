//! The in-process bus of `hearthd standalone`: a direct call into the invoker.
