// P/Invoke bindings for the Chimeraforge C ABI (include/chimera.h), as a Unity or .NET project
// uses them. Put libchimera_c.so (Linux), chimera_c.dll (Windows) or libchimera_c.dylib next to
// the player (Unity: Assets/Plugins/<platform>/).
//
// Strings cross as UTF-8 through IntPtr, so the same code runs on Mono, IL2CPP and .NET.
// Callbacks are static methods (IL2CPP needs them static, marked MonoPInvokeCallback); each
// line's user_data is a GCHandle to the managed Line object the callback belongs to.
using System;
using System.Runtime.InteropServices;
using System.Text;

namespace Chimera
{
    public enum Status
    {
        Ok = 0, InvalidArgument = 1, Config = 2, Model = 3, NotFound = 4, Timeout = 5,
        Cancelled = 6, Backend = 7, Closed = 8, Internal = 9
    }

    public enum Delivery { Poll = 0, Immediate = 1 }

    [StructLayout(LayoutKind.Sequential)]
    public struct EngineParams
    {
        public Delivery delivery;
        public IntPtr model;           // const char*
        public IntPtr model_override;  // const char*
        public int threads;
        public int io_threads;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct SceneParams
    {
        public int warm_up;
        public int budget_ms;
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    [return: MarshalAs(UnmanagedType.I1)]
    public delegate bool TextFn(IntPtr line, IntPtr text, UIntPtr length, IntPtr userData);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    [return: MarshalAs(UnmanagedType.I1)]
    public delegate bool SentenceFn(IntPtr line, IntPtr text, UIntPtr length, int index, IntPtr userData);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate void DoneFn(IntPtr line, Status status, IntPtr userData);

    [StructLayout(LayoutKind.Sequential)]
    public struct LineParams
    {
        public IntPtr speaker;  // const char*, or IntPtr.Zero: the scene's turn policy picks
        public int budget_ms;
        [MarshalAs(UnmanagedType.I1)] public bool background;
        public IntPtr on_token;
        public IntPtr on_thinking;
        public IntPtr on_sentence;
        public IntPtr on_done;
        public IntPtr user_data;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct LineFigures
    {
        public int index;
        public int finished;
        public Status status;
        public int interrupted;
        public int budget_held;  // 1 held, 0 missed, -1 not decided
        public double budget_ms;
        public double ttft_line_ms;
        public double ttft_client_ms;
        public double ttft_server_ms;
        public double first_sentence_ms;
        public double e2e_ms;
        public double director_ms;
        public double scheduled_ms;
        public double decode_tps_client;
        public long tokens_out;
        public long tokens_in;
        public long prompt_tokens_cached;
        public int sentences;
        public int attempts;
    }

    public static class Native
    {
        const string Lib = "chimera_c";

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern IntPtr chimera_last_error();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern EngineParams chimera_engine_default_params();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern Status chimera_engine_create(IntPtr configToml, ref EngineParams p, out IntPtr engine);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern void chimera_engine_destroy(IntPtr engine);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern int chimera_poll(IntPtr engine, int timeoutMs);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern SceneParams chimera_scene_default_params();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern Status chimera_scene_open_file(IntPtr engine, IntPtr path, ref SceneParams p, out IntPtr scene);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern void chimera_scene_destroy(IntPtr scene);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern Status chimera_scene_say(IntPtr scene, IntPtr speaker, IntPtr text, [MarshalAs(UnmanagedType.I1)] bool interrupt);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern int chimera_scene_interrupt(IntPtr scene);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern LineParams chimera_line_default_params();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern Status chimera_scene_next(IntPtr scene, ref LineParams p, out IntPtr line);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern Status chimera_line_cancel(IntPtr line);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern Status chimera_line_get_figures(IntPtr line, out LineFigures figures);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern IntPtr chimera_line_speaker(IntPtr line);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern IntPtr chimera_line_text(IntPtr line);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] public static extern void chimera_line_destroy(IntPtr line);

        // UTF-8 in and out.
        public static IntPtr ToUtf8(string s)
        {
            if (s == null) return IntPtr.Zero;
            byte[] bytes = Encoding.UTF8.GetBytes(s + "\0");
            IntPtr p = Marshal.AllocHGlobal(bytes.Length);
            Marshal.Copy(bytes, 0, p, bytes.Length);
            return p;
        }
        public static string FromUtf8(IntPtr p, int length = -1)
        {
            if (p == IntPtr.Zero) return null;
            if (length < 0) { length = 0; while (Marshal.ReadByte(p, length) != 0) length++; }
            byte[] bytes = new byte[length];
            Marshal.Copy(p, bytes, 0, length);
            return Encoding.UTF8.GetString(bytes);
        }
        public static string LastError() => FromUtf8(chimera_last_error());
    }

    public sealed class ChimeraException : Exception
    {
        public readonly Status Status;
        public ChimeraException(Status s, string what) : base($"{what}: {s}: {Native.LastError()}") { Status = s; }
    }

    // One line being spoken. Events arrive inside Engine.Poll() (Delivery.Poll), on the thread
    // that calls it: in Unity, the main thread, from Update().
    public sealed class Line : IDisposable
    {
        public event Action<string> Token;     // spoken text as it streams (subtitles)
        public event Action<string, int> Sentence;  // a whole sentence: start text-to-speech
        public event Action<Status> Done;
        public IntPtr Handle { get; internal set; }
        internal GCHandle Self;

        public string Speaker => Native.FromUtf8(Native.chimera_line_speaker(Handle));
        public string Text => Native.FromUtf8(Native.chimera_line_text(Handle));
        public LineFigures Figures { get { Native.chimera_line_get_figures(Handle, out var f); return f; } }
        public void Cancel() => Native.chimera_line_cancel(Handle);

        internal void OnToken(string t) => Token?.Invoke(t);
        internal void OnSentence(string s, int i) => Sentence?.Invoke(s, i);
        internal void OnDone(Status s) => Done?.Invoke(s);

        public void Dispose()
        {
            if (Handle != IntPtr.Zero) Native.chimera_line_destroy(Handle);  // no callback after this
            Handle = IntPtr.Zero;
            if (Self.IsAllocated) Self.Free();
        }
    }

    public sealed class Engine : IDisposable
    {
        public IntPtr Handle { get; private set; }

        public Engine(string configToml = null, Delivery delivery = Delivery.Poll, string model = null)
        {
            EngineParams p = Native.chimera_engine_default_params();
            p.delivery = delivery;
            IntPtr cfg = Native.ToUtf8(configToml), m = Native.ToUtf8(model);
            p.model = m;
            try
            {
                Status s = Native.chimera_engine_create(cfg, ref p, out IntPtr h);
                if (s != Status.Ok) throw new ChimeraException(s, "chimera_engine_create");
                Handle = h;
            }
            finally { Marshal.FreeHGlobal(cfg); Marshal.FreeHGlobal(m); }
        }

        // Runs the callbacks that arrived; call once per frame.
        public int Poll(int timeoutMs = 0) => Native.chimera_poll(Handle, timeoutMs);

        public void Dispose()
        {
            if (Handle != IntPtr.Zero) Native.chimera_engine_destroy(Handle);
            Handle = IntPtr.Zero;
        }
    }

    public sealed class Scene : IDisposable
    {
        public IntPtr Handle { get; private set; }

        // The delegates stay referenced for the life of the process: native code holds pointers.
        static readonly TextFn TokenCb = OnToken;
        static readonly SentenceFn SentenceCb = OnSentence;
        static readonly DoneFn DoneCb = OnDone;

        public Scene(Engine engine, string path)
        {
            SceneParams p = Native.chimera_scene_default_params();
            IntPtr file = Native.ToUtf8(path);
            try
            {
                Status s = Native.chimera_scene_open_file(engine.Handle, file, ref p, out IntPtr h);
                if (s != Status.Ok) throw new ChimeraException(s, "chimera_scene_open_file");
                Handle = h;
            }
            finally { Marshal.FreeHGlobal(file); }
        }

        // The player speaks (over anyone who is talking).
        public void Say(string text)
        {
            IntPtr t = Native.ToUtf8(text);
            try { Native.chimera_scene_say(Handle, IntPtr.Zero, t, true); }
            finally { Marshal.FreeHGlobal(t); }
        }

        // Starts the next line; speaker null: the scene's turn policy picks.
        public Line Next(string speaker = null)
        {
            var line = new Line();
            line.Self = GCHandle.Alloc(line);
            LineParams p = Native.chimera_line_default_params();
            p.on_token = Marshal.GetFunctionPointerForDelegate(TokenCb);
            p.on_sentence = Marshal.GetFunctionPointerForDelegate(SentenceCb);
            p.on_done = Marshal.GetFunctionPointerForDelegate(DoneCb);
            p.user_data = GCHandle.ToIntPtr(line.Self);
            IntPtr who = Native.ToUtf8(speaker);
            p.speaker = who;
            try
            {
                Status s = Native.chimera_scene_next(Handle, ref p, out IntPtr h);
                if (s != Status.Ok) { line.Self.Free(); throw new ChimeraException(s, "chimera_scene_next"); }
                line.Handle = h;
            }
            finally { Marshal.FreeHGlobal(who); }
            return line;
        }

        static Line From(IntPtr userData) => (Line)GCHandle.FromIntPtr(userData).Target;

        [AOT.MonoPInvokeCallback(typeof(TextFn))]
        static bool OnToken(IntPtr line, IntPtr text, UIntPtr length, IntPtr userData)
        {
            From(userData).OnToken(Native.FromUtf8(text, (int)length));
            return true;
        }

        [AOT.MonoPInvokeCallback(typeof(SentenceFn))]
        static bool OnSentence(IntPtr line, IntPtr text, UIntPtr length, int index, IntPtr userData)
        {
            From(userData).OnSentence(Native.FromUtf8(text, (int)length), index);
            return true;
        }

        [AOT.MonoPInvokeCallback(typeof(DoneFn))]
        static void OnDone(IntPtr line, Status status, IntPtr userData) => From(userData).OnDone(status);

        public void Dispose()
        {
            if (Handle != IntPtr.Zero) Native.chimera_scene_destroy(Handle);
            Handle = IntPtr.Zero;
        }
    }
}

#if !UNITY_5_3_OR_NEWER
// Outside Unity, the attribute IL2CPP needs does not exist: an empty one keeps the code the same.
namespace AOT
{
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type type) { }
    }
}
#endif
