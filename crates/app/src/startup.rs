//! Building the HTTP server from settings and the wired components, shared by `serve` and the
//! tests.

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use std::net::{SocketAddr, TcpListener};

use crate::http;
use crate::settings::Settings;
use crate::wiring::Components;

/// A bound, not yet running, HTTP server.
pub struct Application {
    server: Server,
    address: SocketAddr,
}

impl Application {
    /// Binds `settings.server.bind_addr` (port 0 picks a free port) and builds the server on
    /// `components`: handlers get the application state, the readiness probe and the store (for
    /// `/metrics`), each as `web::Data`. Pools and clients are built once, outside the
    /// per-worker factory, and shared by every worker's clones.
    ///
    /// # Errors
    /// If the address cannot be bound.
    pub fn build(settings: &Settings, components: &Components) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.server.bind_addr)?;
        let address = listener.local_addr()?;
        let limits = http::RoutePolicies::new(&settings.rate_limit);
        // Installed before the first request is counted.
        crate::telemetry::metrics_handle();
        let state = web::Data::new(components.state.clone());
        let readiness = web::Data::from(components.infra.readiness().clone());
        let store = web::Data::new(components.infra.store().clone());
        let cors = settings.cors.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(readiness.clone())
                .app_data(store.clone())
                .wrap(http::cors::cors(&cors))
                .wrap(from_fn(http::middleware::request_id))
                // Last wrapped, so first to run: nothing reads an oversized header.
                .wrap(from_fn(http::middleware::bounded_headers))
                .configure(|config| http::routes(config, &limits))
                .default_service(web::to(http::unknown_route))
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .listen(listener)?
        .run();
        Ok(Self { server, address })
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Where the server listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until the server is stopped (SIGTERM, SIGINT or its handle), draining in-flight
    /// requests within the shutdown timeout.
    ///
    /// # Errors
    /// If the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}
