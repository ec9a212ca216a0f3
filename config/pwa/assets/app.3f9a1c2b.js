// Content-hashed name: served with `Cache-Control: public, max-age=31536000, immutable`.
document.getElementById('isolated').textContent = String(self.crossOriginIsolated);
if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js');
