//! Registration of routes together with their documentation. A handler carries its route
//! (actix-web's `#[get("/path")]`, with its middleware as `wrap = "..."`) and its OpenAPI
//! operation (`#[utoipa::path(...)]`) on one item; [`Routes::service`] registers both, so no
//! route is served undocumented and no path list is kept by hand. Once a group is registered,
//! each of its paths answers the methods it does not serve with 405 and an `Allow` header
//! derived from what was registered.

use actix_web::dev::HttpServiceFactory;
use actix_web::web;
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{PathItem, Paths};
use utoipa::openapi::schema::Schema;
use utoipa_actix_web::OpenApiFactory;

use super::error::AppError;

/// What the registered handlers document: their paths (with the prefix of the scope they were
/// registered in) and the schemas they refer to.
#[derive(Default)]
pub struct Documented {
    /// The operations, by path.
    pub paths: Paths,
    /// The schemas the operations name.
    pub schemas: Vec<(String, RefOr<Schema>)>,
}

impl std::fmt::Debug for Documented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documented")
            .field("paths", &self.paths.paths.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A handler's registration, deferred until its group is complete.
type Registration = Box<dyn FnOnce(&mut web::ServiceConfig)>;

/// Registers documented handlers under one path prefix (a scope's, or none).
pub struct Routes {
    /// The handlers of each path, the paths in the order they were first registered.
    registrations: Vec<(String, Vec<Registration>)>,
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("paths", &self.paths.paths.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// Registers the handlers `register` adds on `config` (a scope's configuration when
    /// `prefix` is its path), and adds their documentation, prefixed, to `documented`. Each
    /// path's handlers are followed by its 405, so the 405 of a fixed path (`/markets/search`)
    /// comes before the handlers of a pattern that also matches it (`/markets/{id}`), as long as
    /// the fixed path is registered first.
    pub fn group(
        config: &mut web::ServiceConfig,
        prefix: &str,
        documented: &mut Documented,
        register: impl FnOnce(&mut Routes),
    ) {
        let mut routes = Routes::collect(register);
        for (path, handlers) in std::mem::take(&mut routes.registrations) {
            for handler in handlers {
                handler(config);
            }
            let allow = routes
                .paths
                .paths
                .get(&path)
                .map(allowed_methods)
                .unwrap_or_default();
            config.service(web::resource(path.as_str()).to(move || {
                let allow = allow.clone();
                async move { Err::<actix_web::HttpResponse, _>(AppError::MethodNotAllowed(allow)) }
            }));
        }
        routes.document(prefix, documented);
    }

    /// Adds the documentation of the handlers `register` adds, prefixed, to `documented`,
    /// registering nothing: the document of a group without a server.
    pub fn describe(prefix: &str, documented: &mut Documented, register: impl FnOnce(&mut Routes)) {
        Routes::collect(register).document(prefix, documented);
    }

    /// The handlers and documentation `register` adds.
    fn collect(register: impl FnOnce(&mut Routes)) -> Routes {
        let mut routes = Routes {
            registrations: Vec::new(),
            paths: Paths::new(),
            schemas: Vec::new(),
        };
        register(&mut routes);
        routes
    }

    /// Moves this group's documentation, its paths under `prefix`, into `documented`.
    fn document(mut self, prefix: &str, documented: &mut Documented) {
        for (path, item) in std::mem::take(&mut self.paths.paths) {
            let prefixed = Paths::builder()
                .path(format!("{prefix}{path}"), item)
                .build();
            documented.paths.merge(prefixed);
        }
        documented.schemas.append(&mut self.schemas);
    }

    /// Registers `handler` (an actix-web route annotated with `#[utoipa::path]`) and its
    /// operation.
    pub fn service<F: HttpServiceFactory + OpenApiFactory + 'static>(
        &mut self,
        handler: F,
    ) -> &mut Self {
        let paths = handler.paths();
        handler.schemas(&mut self.schemas);
        // An actix-web route has one path.
        let path = paths.paths.keys().next().cloned().unwrap_or_default();
        let registration: Registration = Box::new(|config| {
            config.service(handler);
        });
        match self
            .registrations
            .iter_mut()
            .find(|(known, _)| *known == path)
        {
            Some((_, handlers)) => handlers.push(registration),
            None => self.registrations.push((path, vec![registration])),
        }
        self.paths.merge(paths);
        self
    }
}

/// The `Allow` value of a path: the methods it has operations for.
fn allowed_methods(item: &PathItem) -> String {
    let operations = [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
        ("PATCH", &item.patch),
        ("TRACE", &item.trace),
    ];
    operations
        .iter()
        .filter(|(_, operation)| operation.is_some())
        .map(|(method, _)| *method)
        .collect::<Vec<_>>()
        .join(", ")
}
