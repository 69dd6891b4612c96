// The script of the tool's LTI login and launch pages (shared/lti/pages.py says which page does
// what). Platform storage: 1EdTech lti-cs-pm v0p1 (lti.capabilities), lti-pm-s v0p1
// (lti.put_data / lti.get_data), lti-cs-oidc v0p1 (the login and launch that use them).
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("lti-page").textContent);
  var status = document.getElementById("status");
  function say(text) {
    if (status) status.textContent = text;
  }

  if (config.kind === "open") {
    window.location.replace(config.href);
    return;
  }

  var counter = 0;
  // The frame of the LMS page a message goes to: `_parent`, or a named frame of the parent.
  function frameNamed(name) {
    var parent = window.parent !== window ? window.parent : window.opener;
    if (!parent) return null;
    if (name === "_parent") return parent;
    try {
      return parent.frames[name] || null;
    } catch (e) {
      return null;
    }
  }

  // One request and its reply: sent only to the platform's origin, answered only from it,
  // with our message_id and the subject's ".response" (lti-cs-pm v0p1). `resendMs`: send the
  // same message again at that interval until it is answered. The storage frame is the LMS
  // page's sibling of ours and may still be loading when this page runs: a message posted to
  // a frame before its page listens is lost, so the first question (lti.capabilities) is
  // asked again until the frame answers. A repeated answer finds no listener.
  function ask(target, message, resendMs) {
    return new Promise(function (resolve, reject) {
      var id = "vp-" + Date.now() + "-" + ++counter + "-" + Math.random().toString(36).slice(2);
      var resend;
      function stop() {
        clearTimeout(timer);
        clearInterval(resend);
        window.removeEventListener("message", onMessage);
      }
      var timer = setTimeout(function () {
        stop();
        reject(new Error("no answer to " + message.subject));
      }, config.timeout_ms);
      function onMessage(event) {
        var data = event.data;
        if (event.origin !== config.origin || !data || typeof data !== "object") return;
        if (data.message_id !== id || data.subject !== message.subject + ".response") return;
        stop();
        if (data.error) reject(new Error(data.error.message || data.error.code || "refused"));
        else resolve(data);
      }
      window.addEventListener("message", onMessage);
      message.message_id = id;
      target.postMessage(message, config.origin);
      if (resendMs) {
        resend = setInterval(function () {
          target.postMessage(message, config.origin);
        }, resendMs);
      }
    });
  }

  // The frames that take lti.put_data and lti.get_data, per the capabilities' answer.
  function storageFrames() {
    var target = frameNamed(config.target);
    if (!target) return Promise.reject(new Error("no storage frame"));
    return ask(target, { subject: "lti.capabilities" }, config.resend_ms).then(function (answer) {
      var supported = Array.isArray(answer.supported_messages) ? answer.supported_messages : [];
      function frameFor(subject) {
        var found = supported.filter(function (m) {
          return m && m.subject === subject;
        })[0];
        if (!found) throw new Error(subject + " is not offered");
        return found.frame ? frameNamed(found.frame) : target;
      }
      return { put: frameFor("lti.put_data"), get: frameFor("lti.get_data") };
    });
  }

  function each(values, use) {
    return Promise.all(
      Object.keys(values).map(function (key) {
        return use(key, values[key]);
      }),
    );
  }

  if (config.kind === "login") {
    storageFrames()
      .then(function (frames) {
        return each(config.put, function (key, value) {
          return ask(frames.put, { subject: "lti.put_data", key: key, value: value });
        });
      })
      .then(
        function () {
          window.location.assign(config.next);
        },
        function () {
          window.location.replace(config.fallback); // the same login, the cookie way
        },
      );
  } else if (config.kind === "check") {
    storageFrames()
      .then(function (frames) {
        return each(config.get, function (key, value) {
          return ask(frames.get, { subject: "lti.get_data", key: key }).then(function (answer) {
            if (answer.key !== key || answer.value !== value) throw new Error("mismatch");
          });
        });
      })
      .then(
        function () {
          var form = document.createElement("form");
          form.method = "post";
          form.action = config.action;
          Object.keys(config.form).forEach(function (name) {
            var input = document.createElement("input");
            input.type = "hidden";
            input.name = name;
            input.value = config.form[name];
            form.appendChild(input);
          });
          document.body.appendChild(form);
          form.submit();
        },
        function () {
          say(config.refusal);
        },
      );
  }
})();
