//! `mc-mirror`: the service-mirror controller.
