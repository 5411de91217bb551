// Starts the vendored Swagger UI on /docs (no inline script: the page's CSP forbids it).
"use strict";
(function () {
  const root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null, // no online validator badge: nothing leaves this server
    presets: [window.SwaggerUIBundle.presets.apis],
  });
})();
