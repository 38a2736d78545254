// A Unity component that runs a banter scene: the engine's callbacks run on the main thread
// from Update() (Delivery.Poll), each sentence goes to text-to-speech as soon as it is complete,
// and the player's typed line interrupts whoever is talking.
//
// Attach to a GameObject; put the scene file in Assets/StreamingAssets/ and libchimera_c in
// Assets/Plugins/. Replace Speak() with your TTS engine's call.
#if UNITY_5_3_OR_NEWER
using System.IO;
using UnityEngine;

namespace Chimera
{
    public sealed class BanterDirector : MonoBehaviour
    {
        public string sceneFile = "tavern.toml";
        public string modelFile = "";   // a GGUF in StreamingAssets; empty: the scene's model
        public float pauseBetweenLines = 0.4f;

        Engine engine;
        Scene scene;
        Line line;
        float nextLineAt;

        void Awake()
        {
            string model = string.IsNullOrEmpty(modelFile)
                ? null : Path.Combine(Application.streamingAssetsPath, modelFile);
            engine = new Engine(delivery: Delivery.Poll, model: model);
            scene = new Scene(engine, Path.Combine(Application.streamingAssetsPath, sceneFile));
        }

        void Update()
        {
            engine.Poll(0);  // this frame's tokens, sentences and ends, on the main thread
            if (line == null && Time.time >= nextLineAt)
            {
                line = scene.Next();
                line.Token += text => Subtitles(line.Speaker, text);
                line.Sentence += (sentence, i) => Speak(line.Speaker, sentence);
                line.Done += status =>
                {
                    LineFigures f = line.Figures;
                    Debug.Log($"{line.Speaker}: ttft {f.ttft_line_ms:F1} ms, budget " +
                              (f.budget_held == 1 ? "held" : "missed") + $", {status}");
                    line.Dispose();
                    line = null;
                    nextLineAt = Time.time + pauseBetweenLines;
                };
            }
        }

        // Called by your UI when the player sends a line.
        public void PlayerSays(string text)
        {
            scene.Say(text);  // interrupts the current line; its on_done still comes
        }

        void Subtitles(string speaker, string text) { /* append to the subtitle box */ }
        void Speak(string speaker, string sentence) { Debug.Log($"[tts] {speaker}: {sentence}"); }

        void OnDestroy()
        {
            line?.Dispose();
            scene?.Dispose();
            engine?.Dispose();
        }
    }
}
#endif
