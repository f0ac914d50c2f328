//! Authentication: password hashing and policy, access JWTs, and the login/refresh/token logic
//! that the HTTP API and the admin CLI share.

pub mod jwt;
pub mod password;
pub mod service;
pub mod throttle;

pub use jwt::{AccessClaims, JwtKeys};
pub use service::{AuthError, AuthService, Principal};
