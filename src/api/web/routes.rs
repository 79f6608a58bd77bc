//! API routes: OpenWhisk's API management (`whisk.system/apimgmt`) answered by hearth itself.

use hyper::body::Incoming;
use hyper::{Request, Response};

use super::super::response::{ApiError, Body};
use super::{error_response, Caller};
use crate::controller::Controller;

pub const SYSTEM_NAMESPACE: &str = "whisk.system";
pub const APIMGMT_PACKAGE: &str = "apimgmt";

pub async fn apimgmt(
    _req: Request<Incoming>,
    _c: &Controller,
    _caller: &Caller,
    _action: &str,
) -> Response<Body> {
    error_response(ApiError::not_found())
}
