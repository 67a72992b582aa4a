//! Ports implemented for `Arc<T>`, so an application can choose its adapters at run time and hold
//! them as `Arc<dyn Port>` while the services stay generic over the port.

/// Implements `$port` for `Arc<T>` by forwarding each listed method to `T`: the async methods
/// first (through `async_trait`), then the plain ones.
macro_rules! forward_through_arc {
    ($port:ident {
        $(async fn $method:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*
        $(fn $sync:ident(&self $(, $sarg:ident: $sty:ty)*) -> $sret:ty;)*
    }) => {
        #[async_trait::async_trait]
        impl<T: $port + ?Sized> $port for std::sync::Arc<T> {
            $(
                async fn $method(&self $(, $arg: $ty)*) -> $ret {
                    (**self).$method($($arg),*).await
                }
            )*
            $(
                fn $sync(&self $(, $sarg: $sty)*) -> $sret {
                    (**self).$sync($($sarg),*)
                }
            )*
        }
    };
}
